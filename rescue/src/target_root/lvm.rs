//! `lvm.conf`: `devices { md_component_detection = 1 }`. With 1.0 (and 0.90) metadata the
//! raw member shows the same PV label as the md device; LVM must skip md components or it can
//! activate the local SR on one disk behind md's back. Edits the existing setting, else puts
//! it after a commented-out default (`# md_component_detection = 1`) inside `devices {`, else
//! right after `devices {`; appends a `devices` section if the file has none.

use super::{indent_of, lines_with_endings, TargetError};

/// The part of a line before any `#` that is not inside a string.
fn code_part(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn setting_name(code: &str) -> Option<&str> {
    let (k, _) = code.split_once('=')?;
    Some(k.trim())
}

/// Makes sure md components are skipped. Idempotent. Unbalanced braces are an error: LVM
/// would reject the file too, and guessing where a section ends could disable it.
pub fn ensure_md_component_detection(text: &str) -> Result<String, TargetError> {
    let lines: Vec<(&str, &str)> = lines_with_endings(text).collect();
    let mut depth = 0i32;
    let (mut sec_start, mut sec_end, mut setting, mut commented) = (None, None, None, None);
    let mut in_devices = false;
    for (i, (body, _)) in lines.iter().enumerate() {
        let code = code_part(body);
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if depth == 0 && sec_start.is_none() {
            let c = code.trim();
            if let Some(rest) = c.strip_prefix("devices") {
                if rest.trim_start().starts_with('{') {
                    sec_start = Some(i);
                    in_devices = true;
                }
            }
        } else if in_devices && depth == 1 {
            if setting_name(code) == Some("md_component_detection") {
                setting.get_or_insert(i);
            } else if code.trim().is_empty() {
                let com = body.trim_start().trim_start_matches('#').trim_start();
                if setting_name(com) == Some("md_component_detection") {
                    commented.get_or_insert(i);
                }
            }
        }
        depth += opens - closes;
        if depth < 0 {
            return Err(unbalanced(i));
        }
        if in_devices && depth == 0 {
            in_devices = false;
            sec_end = Some(i);
        }
    }
    if depth != 0 {
        return Err(unbalanced(lines.len()));
    }
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + 64);
    let value_line = |indent: &str| format!("{indent}md_component_detection = 1");
    if let Some(i) = setting {
        for (j, (body, end)) in lines.iter().enumerate() {
            if j == i {
                let code = code_part(body);
                let value = code.split_once('=').map(|x| x.1.trim()).unwrap_or("");
                if value == "1" {
                    out.push_str(body);
                } else {
                    out.push_str(&value_line(indent_of(body)));
                    out.push_str(&body[code.trim_end().len()..]);
                }
            } else {
                out.push_str(body);
            }
            out.push_str(end);
        }
        return Ok(out);
    }
    let insert_after = commented.or(sec_start);
    let indent = match (commented, sec_start) {
        (Some(c), _) => indent_of(lines[c].0).to_string(),
        (None, Some(s)) => lines
            .get(s + 1)
            .filter(|_| sec_end != Some(s))
            .map(|l| indent_of(l.0).to_string())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "\t".into()),
        _ => "\t".into(),
    };
    let single_line_section = sec_start.is_some() && sec_start == sec_end;
    for (j, (body, end)) in lines.iter().enumerate() {
        if single_line_section && Some(j) == sec_start {
            // `devices { }` on one line: open it up.
            let (head, tail) = body.split_once('{').unwrap_or((body, "}"));
            out.push_str(&format!(
                "{head}{{{nl}{}{nl}{}",
                value_line(&indent),
                tail.trim_start()
            ));
            out.push_str(if end.is_empty() { nl } else { end });
            continue;
        }
        out.push_str(body);
        out.push_str(if end.is_empty() && Some(j) == insert_after {
            nl
        } else {
            end
        });
        if Some(j) == insert_after && !single_line_section {
            out.push_str(&value_line(&indent));
            out.push_str(nl);
        }
    }
    if sec_start.is_none() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(nl);
        }
        out.push_str(&format!("devices {{{nl}{}{nl}}}{nl}", value_line("\t")));
    }
    Ok(out)
}

fn unbalanced(line: usize) -> TargetError {
    TargetError::Unparsable {
        what: "lvm.conf".into(),
        reason: format!(
            "unbalanced braces near line {}; fix the file by hand (lvmconfig --validate)",
            line + 1
        ),
    }
}

/// The value of `devices/md_component_detection` if set outside comments (for checks).
pub fn md_component_detection(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let code = code_part(l);
        (setting_name(code) == Some("md_component_detection"))
            .then(|| code.split_once('=').map(|x| x.1.trim().to_string()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_existing_value_keeping_comment() {
        let t = "devices {\n\tdir = \"/dev\"\n\tmd_component_detection = 0 # off\n}\n";
        let out = ensure_md_component_detection(t).unwrap();
        assert_eq!(
            out,
            "devices {\n\tdir = \"/dev\"\n\tmd_component_detection = 1 # off\n}\n"
        );
        assert_eq!(ensure_md_component_detection(&out).unwrap(), out);
    }

    #[test]
    fn inserts_after_commented_default() {
        let t = "config {\n}\ndevices {\n\t# Configuration option devices/md_component_detection.\n\t# md_component_detection = 1\n\tfilter = [ \"r|/dev/nbd|\" ]\n}\n";
        let out = ensure_md_component_detection(t).unwrap();
        assert!(
            out.contains("\t# md_component_detection = 1\n\tmd_component_detection = 1\n\tfilter")
        );
        assert_eq!(ensure_md_component_detection(&out).unwrap(), out);
    }

    #[test]
    fn appends_section_when_missing_and_opens_one_line_section() {
        let out = ensure_md_component_detection("global {\n}").unwrap();
        assert_eq!(
            out,
            "global {\n}\ndevices {\n\tmd_component_detection = 1\n}\n"
        );
        let out = ensure_md_component_detection("devices { }\n").unwrap();
        assert_eq!(out, "devices {\n\tmd_component_detection = 1\n}\n");
        assert_eq!(ensure_md_component_detection(&out).unwrap(), out);
    }

    #[test]
    fn unbalanced_braces_are_an_error() {
        for t in ["devices {\n", "}\ndevices {\n}\n", "menuentry 'x' {"] {
            assert!(ensure_md_component_detection(t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn commented_setting_outside_devices_is_not_used() {
        let t = "# md_component_detection = 1\ndevices {\n    dir = \"/dev\"\n}\n";
        let out = ensure_md_component_detection(t).unwrap();
        assert_eq!(out, "# md_component_detection = 1\ndevices {\n    md_component_detection = 1\n    dir = \"/dev\"\n}\n");
    }
}
