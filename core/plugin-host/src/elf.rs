//! A shared library cut short (an interrupted copy, a rebuild in place) must be refused before
//! `dlopen`: the loader maps its segments past the end of the file, and the first touch of
//! them raises SIGBUS, which kills the process with no file named. Only the sizes the ELF
//! header promises are checked (64-bit little-endian ELF, the only kind this host loads); any
//! other file is left to `dlopen`, which refuses it with an error.

use std::io::Read;
use std::path::Path;

/// If `path` is a 64-bit little-endian ELF file shorter than its headers say, how many bytes
/// it has and how many it needs.
pub fn truncated(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(64);
    file.by_ref().take(64).read_to_end(&mut head)?;
    if head.len() < 4 || head[..4] != *b"\x7fELF" {
        return Ok(None);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if head.len() < 64 || head[4] != 2 || head[5] != 1 {
        return Ok((head.len() < 64).then_some((len, 64)));
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([head[o], head[o + 1]]));
    let u64_at = |b: &[u8], o: usize| b[o..o + 8].iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let (phoff, shoff) = (u64_at(&head, 0x20), u64_at(&head, 0x28));
    let (phentsize, phnum, shentsize, shnum) = (u16_at(0x36), u16_at(0x38), u16_at(0x3A), u16_at(0x3C));
    let mut needed = phoff.saturating_add(phentsize * phnum).max(shoff.saturating_add(shentsize * shnum));
    if needed <= len && phentsize >= 0x28 {
        // Each segment's bytes in the file: p_offset at +8, p_filesz at +0x20.
        let mut table = vec![0u8; (phentsize * phnum) as usize];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(phoff))?;
        file.read_exact(&mut table)?;
        for entry in table.chunks_exact(phentsize as usize) {
            needed = needed.max(u64_at(entry, 8).saturating_add(u64_at(entry, 0x20)));
        }
    }
    Ok((needed > len).then_some((len, needed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is itself a complete 64-bit ELF file; cut short it is refused.
    #[test]
    fn a_complete_library_passes_and_a_cut_one_is_found() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(truncated(&exe).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        for keep in [100_000.min(bytes.len() / 2), 63, bytes.len() - 1] {
            let cut = dir.path().join("cut.so");
            std::fs::write(&cut, &bytes[..keep]).unwrap();
            let (have, need) = truncated(&cut).unwrap().unwrap_or_else(|| panic!("{keep} bytes not found short"));
            assert_eq!(have, keep as u64);
            assert!(need > have);
        }
        let text = dir.path().join("text.so");
        std::fs::write(&text, "not a library").unwrap();
        assert_eq!(truncated(&text).unwrap(), None);
    }
}
