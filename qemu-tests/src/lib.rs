//! QEMU harness for the rescue image, in the style of cloud-hypervisor's `test_infra`
//! and u-root's vmtest: a [`vm::VmBuilder`], a serial console captured to a file,
//! `wait_for` with a timeout, the QEMU command line printed as a reproducer and the
//! whole console dumped when a test fails.
//!
//! The image under test comes from `XENRAID_IMAGE_DIR` (set by `cargo xtask test`),
//! else `target/rescue/`; a missing image is an error telling how to build it.

pub mod backup;
pub mod examine;
pub mod fixture;
pub mod images;
pub mod ovmf_vars;
pub mod vm;

use anyhow::{bail, Context};
use rescue::report::Report;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built rescue kernel and initramfs.
#[derive(Clone, Debug)]
pub struct RescueImage {
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
}

impl RescueImage {
    pub fn locate() -> anyhow::Result<RescueImage> {
        let dir = std::env::var_os("XENRAID_IMAGE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rescue"));
        let img = RescueImage {
            vmlinuz: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.cpio.gz"),
        };
        if !img.vmlinuz.is_file() || !img.initramfs.is_file() {
            bail!(
                "no rescue image in {}: run `cargo xtask build` (or `cargo xtask test`) first",
                dir.display()
            );
        }
        Ok(img)
    }
}

/// Whether the full QEMU matrix runs (`cargo xtask e2e`) or CI's representative subset.
pub fn full_matrix() -> bool {
    std::env::var("XENRAID_E2E").as_deref() == Ok("full")
}

/// A scratch directory for one test, removed when dropped unless the test failed.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("xenraid-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Scratch { dir })
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scratch files kept for inspection in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The timeout for a rescue boot (kernel + init) under TCG, generous for a loaded CI box.
pub const RESCUE_BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Boots the rescue image with two small disks and returns its report (for `xtask bench`).
pub fn bench_inspect_boot(
    vmlinuz: &Path,
    initramfs: &Path,
    scratch: &Path,
    cpus: u32,
    extra_args: &str,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(scratch)?;
    let a = scratch.join("a.img");
    let b = scratch.join("b.img");
    images::two_partition_disk(&a, images::TestDisk::default())?;
    images::blank_disk(&b, 64 << 20)?;
    let image = RescueImage {
        vmlinuz: vmlinuz.into(),
        initramfs: initramfs.into(),
    };
    let mut vm = vm::VmBuilder::rescue(&image)
        .cpus(cpus)
        .append(extra_args)
        .disk(vm::Disk::new(&a, vm::Bus::Virtio).serial("BENCH-A"))
        .disk(vm::Disk::new(&b, vm::Bus::Virtio).serial("BENCH-B"))
        .spawn(scratch)?;
    let report = vm.wait_for_report(RESCUE_BOOT_TIMEOUT)?;
    vm.wait_exit(Duration::from_secs(30))?;
    Ok(report)
}

/// The plan the rescue makes for converting the image `source` onto a blank disk of
/// `mirror_size` bytes, with its defaults (bitmaps on, the source attached). The layout
/// does not depend on the random GUIDs, so tests can say where things land on the mirror
/// or what size a refusal names.
pub fn plan_for(
    source: &Path,
    mirror_size: u64,
) -> Result<rescue::convert::plan::ConvertPlan, rescue::convert::plan::PlanError> {
    use rescue::convert::plan::{plan, Options, SourceFacts};
    use rescue::formats::gpt;
    let disk = rescue::inspect::inspect_path(source).expect("inspect the source image");
    let table = gpt::read(
        &mut std::fs::File::open(source).expect("open the source image"),
        Some(disk.logical_sector_size),
    )
    .expect("the source image's GPT");
    let mirror = rescue::inspect::Disk {
        name: "mirror".into(),
        path: "/dev/mirror".into(),
        size_bytes: mirror_size,
        logical_sector_size: disk.logical_sector_size,
        blank: true,
        ..Default::default()
    };
    let opts = Options {
        attach_source: true,
        bitmap: true,
        ..Default::default()
    };
    let mut guids = gpt::GuidSource::Seeded(1);
    plan(
        &disk,
        &table,
        &mirror,
        &SourceFacts::default(),
        &opts,
        &mut || guids.next_guid().expect("seeded GUIDs"),
    )
}

/// Boots the rescue over `disks` with `args` (2 GiB of memory) and returns its report once
/// the guest powered off; the console log goes to `dir`.
pub fn rescue_report(
    dir: &Path,
    disks: Vec<vm::Disk>,
    args: &str,
    timeout: Duration,
) -> anyhow::Result<Report> {
    rescue_report_on(vm::Firmware::Bios, dir, disks, args, timeout)
}

/// [`rescue_report`] on this firmware (OVMF with the host's variable store: the rescue
/// reads and writes its boot entries).
pub fn rescue_report_on(
    firmware: vm::Firmware,
    dir: &Path,
    disks: Vec<vm::Disk>,
    args: &str,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let mut b = vm::VmBuilder::rescue(&RescueImage::locate()?)
        .memory_mib(2048)
        .firmware(firmware)
        .append(args);
    for d in disks {
        b = b.disk(d);
    }
    let mut vm = b.spawn(dir)?;
    let report = vm.wait_for_report(timeout)?;
    eprintln!(
        "{}: report after {:.0} s",
        dir.display(),
        vm.elapsed().as_secs_f64()
    );
    vm.wait_exit(Duration::from_secs(120))?;
    Ok(report)
}
