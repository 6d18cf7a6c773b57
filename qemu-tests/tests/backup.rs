//! End to end, small disks made here (no fixture): `rescue.action=backup` onto a blank
//! disk not named in `rescue.wipe=` is refused with every disk unchanged; named, it is
//! formatted FAT32 and holds a backup that mtools reads and `rescue::backup::verify`
//! accepts; `rescue.action=restore` onto a blank disk gives the source's content back,
//! the backup's disk untouched. The xs7 fixture's backups are in `backup_xs7.rs`.

use qemu_tests::backup::{check_backup, copy_out_and_verify, rescue_boot, FORMATTED_AT};
use qemu_tests::images::{self, run, TestDisk};
use qemu_tests::vm::Bus;
use qemu_tests::Scratch;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A rescue boot over disks of a few hundred MiB.
const SMALL_TIMEOUT: Duration = Duration::from_secs(600);

fn fingerprint(p: &Path) -> String {
    images::content_fingerprint(p).unwrap()
}

/// A 128 MiB GPT disk (ext3 with 4 MiB of data, swap) backed up onto a blank disk, then
/// restored onto another: refusal first, then backup, restore, content compared.
#[test]
fn backs_up_onto_a_wiped_disk_and_restores_onto_a_blank_one() {
    let scratch = Scratch::new("backup-small").unwrap();
    let src = scratch.path("src.img");
    images::two_partition_disk(&src, TestDisk::default()).unwrap();
    let data = scratch.path("data.bin");
    let noise: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&data, noise).unwrap();
    let fs = format!(
        "{}?offset={}",
        src.display(),
        images::FIRST_PARTITION_LBA * 512
    );
    run(Command::new("debugfs").args([
        "-w",
        &fs,
        "-R",
        &format!("write {} data.bin", data.display()),
    ]))
    .unwrap();
    let bk = scratch.path("bk.img");
    images::blank_disk(&bk, 256 << 20).unwrap();
    let src_fp = fingerprint(&src);
    let bk_fp = fingerprint(&bk);
    let disks = [
        (src.as_path(), "XR-SRC", Bus::Virtio),
        (bk.as_path(), "XR-BK", Bus::Virtio),
    ];
    let args = "rescue.action=backup rescue.source=serial:XR-SRC rescue.to=serial:XR-BK";

    let r = rescue_boot(&scratch, "refused", &disks, args, SMALL_TIMEOUT);
    assert!(!r.ok, "a blank disk not named in rescue.wipe= was used");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("is blank: name it in rescue.wipe=serial:XR-BK")),
        "{:?}",
        r.errors
    );
    assert_eq!(
        (fingerprint(&src), fingerprint(&bk)),
        (src_fp.clone(), bk_fp)
    );

    let r = rescue_boot(
        &scratch,
        "backup",
        &disks,
        &format!("{args} rescue.wipe=serial:XR-BK"),
        SMALL_TIMEOUT,
    );
    let b = check_backup(&r, "backup");
    assert!(b.formatted, "{b:#?}");
    assert_eq!(fingerprint(&src), src_fp, "the backup wrote its source");
    let sg = run(Command::new("sgdisk").arg("-v").arg(&bk)).unwrap();
    assert!(sg.contains("No problems found"), "{sg}");
    copy_out_and_verify(&bk, FORMATTED_AT, &b.directory, &scratch.path("out"));

    let new = scratch.path("new.img");
    images::blank_disk(&new, std::fs::metadata(&src).unwrap().len()).unwrap();
    let bk_fp = fingerprint(&bk);
    let r = rescue_boot(
        &scratch,
        "restore",
        &[
            (bk.as_path(), "XR-BK", Bus::Virtio),
            (new.as_path(), "XR-NEW", Bus::Virtio),
        ],
        "rescue.action=restore rescue.from=serial:XR-BK rescue.to=serial:XR-NEW",
        SMALL_TIMEOUT,
    );
    assert!(r.ok, "restore: {:?}\n{:#?}", r.errors, r.restore);
    let rest = r.restore.expect("a restore section");
    assert!(rest.verified, "{rest:#?}");
    assert_eq!(rest.directory, b.directory, "the only backup there");
    assert_eq!(rest.items, b.items);
    assert_eq!(
        fingerprint(&bk),
        bk_fp,
        "the restore wrote the backup's disk"
    );
    // Unused blocks of the source are zeros, so the restored disk is the same content.
    assert_eq!(
        fingerprint(&new),
        src_fp,
        "the restored disk differs from the source"
    );
}
