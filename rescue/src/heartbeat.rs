//! A line at least every few seconds while a long step runs — the step, its elapsed time
//! and the target's program running in the chroot — so a console never looks hung (the
//! configure step on a full module tree ran 11 minutes without a line).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static RUNNING: Mutex<Option<String>> = Mutex::new(None);
static LAST_LINE: Mutex<Option<Instant>> = Mutex::new(None);

/// A progress line went out now: the next beat waits a full interval after it.
pub fn said() {
    if let Ok(mut l) = LAST_LINE.lock() {
        *l = Some(Instant::now());
    }
}

fn quiet_for(every: Duration) -> bool {
    LAST_LINE
        .lock()
        .ok()
        .and_then(|l| *l)
        .is_none_or(|t| t.elapsed() >= every)
}

/// Says what runs now (a chroot command line) until dropped.
pub struct Running(());

pub fn running(what: String) -> Running {
    if let Ok(mut r) = RUNNING.lock() {
        *r = Some(what);
    }
    Running(())
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            *r = None;
        }
    }
}

/// Sends `label: still running after N s (what)` to `sink` every `every` until dropped.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(label: String, every: Duration, sink: impl Fn(&str) + Send + 'static) -> Self {
        let (stop, rx) = mpsc::channel::<()>();
        let started = Instant::now();
        let thread = std::thread::spawn(move || loop {
            match rx.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) if !quiet_for(every) => {}
                Err(RecvTimeoutError::Timeout) => {
                    let what = RUNNING.lock().ok().and_then(|r| r.clone());
                    sink(&format!(
                        "{label}: still running after {} s{}",
                        started.elapsed().as_secs(),
                        what.map(|w| format!(" ({w})")).unwrap_or_default()
                    ));
                    said();
                }
                _ => return,
            }
        });
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn beats_while_silent_naming_the_program_not_while_talking() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            move |l: &str| lines.lock().unwrap().push(l.to_string())
        };
        let hb = Heartbeat::start("convert: configure".into(), Duration::from_millis(20), sink);
        let r = running("dracut --force /boot/initrd-x.img x".into());
        // Two beats, however loaded the machine.
        let t = Instant::now();
        while lines.lock().unwrap().len() < 2 && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(r);
        drop(hb);
        let n = lines.lock().unwrap().len();
        assert!(n >= 2, "{:?}", lines.lock().unwrap());
        let first = lines.lock().unwrap()[0].clone();
        assert!(
            first.starts_with("convert: configure: still running after ")
                && first.ends_with(" s (dracut --force /boot/initrd-x.img x)"),
            "{first}"
        );
        // Dropped: its thread has ended, nothing more comes.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(lines.lock().unwrap().len(), n, "beats after the step ended");

        // A step that talks (the copy's progress lines) gets no beats. In the same test:
        // the last line's time is process-wide.
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            move |l: &str| lines.lock().unwrap().push(l.to_string())
        };
        {
            let _hb = Heartbeat::start("convert: copy".into(), Duration::from_millis(500), sink);
            for _ in 0..20 {
                said();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert!(
            lines.lock().unwrap().is_empty(),
            "{:?}",
            lines.lock().unwrap()
        );
    }
}
