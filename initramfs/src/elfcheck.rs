//! Refuses an `/init` that cannot run in an initramfs without a libc:
//! it must be a static x86_64 ELF executable (static-pie is fine).

use goblin::elf::header::{EM_X86_64, ET_DYN, ET_EXEC};
use goblin::elf::program_header::PT_INTERP;
use goblin::elf::Elf;

use crate::error::{Error, Result};

/// Checks that `bytes` is an x86_64 ELF executable with no program
/// interpreter and no `DT_NEEDED` libraries.
pub fn check_static_init(bytes: &[u8]) -> Result<()> {
    let elf = Elf::parse(bytes).map_err(|e| Error::InitNotElf {
        reason: e.to_string(),
    })?;
    if elf.header.e_machine != EM_X86_64 || !elf.is_64 {
        return Err(Error::InitWrongArch {
            found: format!(
                "{} ({}-bit)",
                goblin::elf::header::machine_to_str(elf.header.e_machine),
                if elf.is_64 { 64 } else { 32 }
            ),
        });
    }
    if !matches!(elf.header.e_type, ET_EXEC | ET_DYN) {
        return Err(Error::InitNotExecutable {
            found: goblin::elf::header::et_to_str(elf.header.e_type).to_string(),
        });
    }
    if elf.program_headers.iter().any(|ph| ph.p_type == PT_INTERP) {
        return Err(Error::InitHasInterpreter {
            interpreter: elf.interpreter.unwrap_or("<unreadable>").to_string(),
        });
    }
    if !elf.libraries.is_empty() {
        return Err(Error::InitNeedsLibraries {
            libraries: elf.libraries.iter().map(|l| l.to_string()).collect(),
        });
    }
    // A shared library is ET_DYN too, but has no entry point.
    if elf.header.e_type == ET_DYN && elf.entry == 0 {
        return Err(Error::InitNotExecutable {
            found: "shared library (no entry point)".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The smallest static x86_64 executable: ELF header plus one PT_LOAD.
    pub(crate) fn minimal_elf(machine: u16, e_type: u16, interp: bool) -> Vec<u8> {
        let phnum: u16 = if interp { 2 } else { 1 };
        let mut b = Vec::new();
        b.extend_from_slice(b"\x7fELF\x02\x01\x01\0");
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&e_type.to_le_bytes());
        b.extend_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // e_version
        b.extend_from_slice(&0x40_1000u64.to_le_bytes()); // e_entry
        b.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        b.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b.extend_from_slice(&phnum.to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        let interp_path = b"/lib/ld.so\0";
        let data_off = 64 + 56 * u64::from(phnum);
        let mut phdr = |p_type: u32, flags: u32, off: u64, size: u64| {
            b.extend_from_slice(&p_type.to_le_bytes());
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&(0x40_0000 + off).to_le_bytes());
            b.extend_from_slice(&(0x40_0000 + off).to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&0x1000u64.to_le_bytes());
        };
        if interp {
            phdr(PT_INTERP, 4, data_off, interp_path.len() as u64);
        }
        phdr(1, 5, 0, data_off + interp_path.len() as u64);
        b.extend_from_slice(interp_path);
        b
    }

    #[test]
    fn minimal_static_executable_is_accepted() {
        check_static_init(&minimal_elf(EM_X86_64, ET_EXEC, false)).unwrap();
    }

    #[test]
    fn real_static_pie_is_accepted() {
        // Debian builds ldconfig (package libc-bin) as static-pie.
        let bytes = std::fs::read("/sbin/ldconfig")
            .expect("/sbin/ldconfig (Debian package libc-bin) is needed as a static-pie sample");
        check_static_init(&bytes).unwrap();
    }

    #[test]
    fn dynamic_binary_is_refused() {
        let bytes =
            std::fs::read("/bin/true").expect("/bin/true (Debian package coreutils) is needed");
        let err = check_static_init(&bytes).unwrap_err();
        assert!(matches!(err, Error::InitHasInterpreter { .. }), "{err}");
        assert!(err.to_string().contains("static"), "{err}");
    }

    #[test]
    fn interpreter_is_refused_even_without_libraries() {
        let err = check_static_init(&minimal_elf(EM_X86_64, ET_EXEC, true)).unwrap_err();
        assert!(
            matches!(&err, Error::InitHasInterpreter { interpreter } if interpreter == "/lib/ld.so"),
            "{err}"
        );
    }

    #[test]
    fn shared_library_without_entry_point_is_refused() {
        let mut bytes = minimal_elf(EM_X86_64, ET_DYN, false);
        bytes[24..32].fill(0); // e_entry
        let err = check_static_init(&bytes).unwrap_err();
        assert!(matches!(err, Error::InitNotExecutable { .. }), "{err}");
    }

    #[test]
    fn static_pie_shape_is_accepted() {
        check_static_init(&minimal_elf(EM_X86_64, ET_DYN, false)).unwrap();
    }

    #[test]
    fn other_architecture_is_refused() {
        let aarch64 = 183;
        let err = check_static_init(&minimal_elf(aarch64, ET_EXEC, false)).unwrap_err();
        assert!(matches!(err, Error::InitWrongArch { .. }), "{err}");
    }

    #[test]
    fn relocatable_object_is_refused() {
        let err = check_static_init(&minimal_elf(EM_X86_64, 1, false)).unwrap_err();
        assert!(matches!(err, Error::InitNotExecutable { .. }), "{err}");
    }

    #[test]
    fn non_elf_is_refused() {
        let err = check_static_init(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(matches!(err, Error::InitNotElf { .. }), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn corrupted_elf_gives_a_result_never_a_panic(
            flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 1..24),
            interp in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = minimal_elf(EM_X86_64, ET_DYN, interp);
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            let _ = check_static_init(&bytes);
            let _ = crate::ModInfo::from_elf(&bytes);
        }

        #[test]
        fn random_bytes_after_elf_magic_give_a_result(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let mut bytes = b"\x7fELF\x02\x01\x01\0".to_vec();
            bytes.extend(tail);
            proptest::prop_assert!(check_static_init(&bytes).is_err());
            let _ = crate::ModInfo::from_elf(&bytes);
        }
    }
}
