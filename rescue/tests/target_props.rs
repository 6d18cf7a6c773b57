//! Property tests: every rewriter, fed any mix of realistic and broken lines, never panics
//! and is idempotent (a resumed job rewriting its own output changes nothing).

mod target_util;

use proptest::prelude::*;
use rescue::target_root::{extlinux, fstab, grub, lvm, mdadm};
use target_util::*;

fn line() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = GRUB_CFG_7
        .lines()
        .chain(GRUB_CFG_XEN_BOOT.lines())
        .chain(EXTLINUX_6.lines())
        .chain(FSTAB_7.lines())
        .chain(FSTAB_6.lines())
        .chain(LVM_CONF.lines())
        .chain(MDADM_SEED001.lines())
        .chain([
            "{",
            "}",
            "devices { }",
            "  ARRAY",
            "append ---",
            "append a --- --- b",
            "module2",
            "\t",
        ])
        .map(String::from)
        .collect();
    prop_oneof![
        3 => proptest::sample::select(fixed),
        1 => "[ -~\t]{0,40}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    (proptest::collection::vec(line(), 0..30), any::<bool>())
        .prop_map(|(l, crlf)| l.join(if crlf { "\r\n" } else { "\n" }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rewriters_are_idempotent(t in text()) {
        let c = conv7();
        let g = grub::rewrite_grub_cfg(&t, &c).unwrap();
        prop_assert_eq!(grub::rewrite_grub_cfg(&g, &c).unwrap(), g.clone());
        let e = extlinux::rewrite_extlinux(&t, &c).unwrap();
        prop_assert_eq!(extlinux::rewrite_extlinux(&e, &c).unwrap(), e);
        let f = fstab::rewrite_fstab(&t, &c);
        prop_assert_eq!(fstab::rewrite_fstab(&f, &c), f);
        if let Ok(l) = lvm::ensure_md_component_detection(&t) {
            prop_assert_eq!(lvm::ensure_md_component_detection(&l).unwrap(), l);
        }
        let m = mdadm::render_mdadm_conf(Some(&t), &c);
        prop_assert_eq!(mdadm::render_mdadm_conf(Some(&m), &c), m);
        let _ = grub::boot_images(&t);
        let _ = extlinux::boot_images(&t);
    }
}
