//! An OpenPGP public key file of the repo, read just enough to hand it to `gpgv` (pure).
//!
//! `gpgv --keyring` reads binary packets only (an ASCII-armored key makes it say "invalid
//! packet" and then "No public key"), so an armored key (`gpg --armor --export`) is
//! dearmored here: base64 between the armor lines, its CRC-24 checked when present. The
//! packets are walked to find the primary keys (their v4 fingerprints name the key in the
//! plan) and to refuse a secret key committed by mistake. Signatures are never checked here:
//! the node's `gpgv` does that.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The key as binary packets, and the upper-case hex fingerprint of each primary key.
#[derive(Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub packets: Vec<u8>,
    pub fingerprints: Vec<String>,
}

const TAG_SECRET_KEY: u8 = 5;
const TAG_PUBLIC_KEY: u8 = 6;
const TAG_SECRET_SUBKEY: u8 = 7;

/// Read a key file's bytes: armored or binary.
pub fn public_key(bytes: &[u8]) -> Result<PublicKey, String> {
    // It is sent in every apply's script: a public key is a few KiB.
    if bytes.len() > 256 << 10 {
        return Err("is larger than 256 KiB: not a public key".into());
    }
    let text = std::str::from_utf8(bytes).ok();
    let packets = match text.map(str::trim_start) {
        Some(t) if t.starts_with("-----BEGIN PGP ") => dearmor(t)?,
        _ if bytes.first().is_some_and(|b| b & 0x80 != 0) => bytes.to_vec(),
        _ => return Err("is not an OpenPGP public key (gpg --export, binary or --armor)".into()),
    };
    let mut fingerprints = Vec::new();
    for (tag, body) in packets_of(&packets)? {
        match tag {
            TAG_SECRET_KEY | TAG_SECRET_SUBKEY => {
                return Err("holds a SECRET key: commit only the public key (gpg --export)".into())
            }
            TAG_PUBLIC_KEY => match body.first() {
                Some(4) => {
                    let mut h = Sha1::new();
                    h.update([0x99, (body.len() >> 8) as u8, body.len() as u8]);
                    h.update(body);
                    fingerprints.push(
                        h.finalize()
                            .iter()
                            .map(|b| format!("{b:02X}"))
                            .collect::<String>(),
                    );
                }
                v => {
                    return Err(format!(
                    "holds a version {} key; gpgv (GnuPG 2.2, Debian 12) verifies version 4 keys",
                    v.copied().unwrap_or(0)
                ))
                }
            },
            _ => {}
        }
    }
    if fingerprints.is_empty() {
        return Err("holds no public key".into());
    }
    Ok(PublicKey {
        packets,
        fingerprints,
    })
}

/// The binary packets of every armored block of `text` (a file may hold several keys).
fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    let mut blocks = 0;
    while let Some(l) = lines.next() {
        let Some(kind) = l
            .strip_prefix("-----BEGIN PGP ")
            .and_then(|k| k.strip_suffix("-----"))
        else {
            continue;
        };
        if kind == "PRIVATE KEY BLOCK" {
            return Err("holds a SECRET key: commit only the public key (gpg --export)".into());
        }
        if kind != "PUBLIC KEY BLOCK" {
            return Err(format!("is an armored `{kind}`, not a PUBLIC KEY BLOCK"));
        }
        let (mut b64, mut crc, mut ended) = (String::new(), None, false);
        for l in lines.by_ref() {
            if l.starts_with("-----END PGP PUBLIC KEY BLOCK-----") {
                ended = true;
                break;
            }
            if l.is_empty() || l.contains(':') {
                continue; // the blank line and armor headers (`Comment: ...`)
            }
            match l.strip_prefix('=') {
                Some(c) if c.len() == 4 => crc = Some(c.to_string()),
                _ => b64.push_str(l),
            }
        }
        if !ended {
            return Err("has no `-----END PGP PUBLIC KEY BLOCK-----` line".into());
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let bytes = engine
            .decode(&b64)
            .map_err(|e| format!("is not valid armor ({e})"))?;
        if let Some(c) = crc {
            let want = engine
                .decode(&c)
                .map_err(|_| "has a broken armor checksum".to_string())?;
            let got = crc24(&bytes).to_be_bytes();
            if want[..] != got[1..] {
                return Err("fails its armor checksum (a damaged copy?)".into());
            }
        }
        out.extend(bytes);
        blocks += 1;
    }
    if blocks == 0 {
        return Err("has no `-----BEGIN PGP PUBLIC KEY BLOCK-----` line".into());
    }
    Ok(out)
}

/// OpenPGP's armor checksum (RFC 4880, 6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xB704CE;
    for &b in data {
        crc ^= (b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= 0x186_4CFB;
            }
        }
    }
    crc & 0xFF_FFFF
}

/// The (tag, body) of each packet; old and new headers (RFC 4880, 4.2), no partial lengths
/// (a key never has them).
fn packets_of(mut p: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let bad = || "is not a well-formed OpenPGP key (a truncated or damaged file?)".to_string();
    let mut out = Vec::new();
    while let Some(&h) = p.first() {
        if h & 0x80 == 0 {
            return Err(bad());
        }
        let be = |b: &[u8]| b.iter().fold(0usize, |n, &x| (n << 8) | x as usize);
        let (tag, len, head) = if h & 0x40 != 0 {
            let tag = h & 0x3f;
            match *p.get(1).ok_or_else(bad)? {
                o @ 0..=191 => (tag, o as usize, 2),
                o @ 192..=223 => {
                    let o2 = *p.get(2).ok_or_else(bad)? as usize;
                    (tag, ((o as usize - 192) << 8) + o2 + 192, 3)
                }
                255 => (tag, be(p.get(2..6).ok_or_else(bad)?), 6),
                _ => return Err(bad()),
            }
        } else {
            let tag = (h >> 2) & 0x0f;
            match h & 3 {
                0 => (tag, be(p.get(1..2).ok_or_else(bad)?), 2),
                1 => (tag, be(p.get(1..3).ok_or_else(bad)?), 3),
                2 => (tag, be(p.get(1..5).ok_or_else(bad)?), 5),
                _ => return Err(bad()),
            }
        };
        let body = p.get(head..head + len).ok_or_else(bad)?;
        out.push((tag, body));
        p = &p[head + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's test-only release key, as committed (armored) and dearmored by GnuPG.
    const LAB_KEY: &str =
        include_str!("../../modules/validator/lab-releases/strata-lab-TEST-ONLY-release-key.asc");
    const LAB_FPR: &str = "ED7232DDC294994D508C8F214525F22B98C6C30E";

    #[test]
    fn an_armored_key_is_dearmored_and_named_by_its_fingerprint() {
        let k = public_key(LAB_KEY.as_bytes()).unwrap();
        assert_eq!(k.fingerprints, [LAB_FPR]);
        // The binary form reads the same.
        assert_eq!(public_key(&k.packets).unwrap(), k);
    }

    #[test]
    fn damaged_secret_or_foreign_keys_are_refused() {
        let k = public_key(LAB_KEY.as_bytes()).unwrap();
        let e = |b: &[u8]| public_key(b).unwrap_err();
        assert!(e(b"hello").contains("not an OpenPGP public key"));
        assert!(e(&k.packets[..k.packets.len() - 3]).contains("not a well-formed"));
        // One changed character in the armor: the checksum says so.
        let body = LAB_KEY.lines().nth(3).unwrap();
        let mut flipped = body.to_string();
        let c = if flipped.starts_with('A') { "B" } else { "A" };
        flipped.replace_range(0..1, c);
        assert!(e(LAB_KEY.replacen(body, &flipped, 1).as_bytes()).contains("checksum"));
        assert!(e(LAB_KEY
            .replace("-----END PGP PUBLIC KEY BLOCK-----", "")
            .as_bytes())
        .contains("no `-----END"));
        let secret =
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ==\n-----END PGP PRIVATE KEY BLOCK-----\n";
        assert!(e(secret.as_bytes()).contains("SECRET"));
        // A binary secret key packet (tag 5, new format).
        assert!(e(&[0xc5, 0x01, 0x04]).contains("SECRET"));
        let sig = "-----BEGIN PGP SIGNATURE-----\n\nwA==\n-----END PGP SIGNATURE-----\n";
        assert!(e(sig.as_bytes()).contains("not a PUBLIC KEY BLOCK"));
        // Only user IDs, no key.
        assert!(e(&[0xcd, 0x01, b'x']).contains("no public key"));
    }
}
