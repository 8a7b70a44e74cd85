//! Common Encryption (ISO/IEC 23001-7) of fMP4 samples: the keys, and the
//! 'cenc' (AES-128 CTR) and 'cbcs' (AES-128 CBC with a 1:9 pattern) schemes
//! applied to a sample's subsamples. Sans-IO: bytes in, bytes out. The AES
//! itself is RustCrypto's (`aes`, `ctr`); the pattern and subsample logic
//! has no crate of its own, so it is here.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes::Aes128;
use base64::Engine;

/// AES block size.
pub const BLOCK: usize = 16;

/// 'cbcs' pattern: 1 block encrypted, then 9 left clear.
pub const CBCS_CRYPT_BLOCKS: usize = 1;
pub const CBCS_SKIP_BLOCKS: usize = 9;

/// A content key or key ID: 16 bytes.
pub type Key16 = [u8; 16];

/// Parses a key or key ID as given by users: 22 characters of base64url
/// without padding (as the packaging API of the seed takes them), or 32
/// hex digits (as most packagers print them; dashes of a UUID allowed).
pub fn parse_key16(s: &str) -> Result<Key16, String> {
    let t = s.trim();
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("'{t}' is not hex"))?;
        }
        return Ok(k);
    }
    if t.len() == 22 || (t.len() == 24 && t.ends_with("==")) {
        let body = t.trim_end_matches('=');
        if let Ok(v) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body) {
            if let Ok(k) = Key16::try_from(v.as_slice()) {
                return Ok(k);
            }
        }
    }
    Err(format!(
        "'{t}' is neither 22 characters of base64url nor 32 hex digits (16 bytes)"
    ))
}

/// Lower-case hex of 16 bytes, as MPDs and ffmpeg's `-decryption_key` take
/// them.
pub fn hex(k: &Key16) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key ID as a UUID string (`cenc:default_KID`).
pub fn uuid(k: &Key16) -> String {
    let h = hex(k);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// AES-128 CTR over every protected byte; an 8-byte IV per sample.
    Cenc,
    /// AES-128 CBC, 1 of every 10 blocks of each protected range; one
    /// constant 16-byte IV, restarted at each subsample.
    Cbcs,
}

impl Scheme {
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Scheme::Cenc => *b"cenc",
            Scheme::Cbcs => *b"cbcs",
        }
    }
}

/// One subsample: `clear` bytes left as they are, then `protected` bytes
/// the scheme encrypts (as `senc` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subsample {
    pub clear: u16,
    pub protected: u32,
}

/// Splits a stretch of `clear` then `protected` bytes into subsamples:
/// `senc` holds at most 65535 clear bytes per entry, so a longer clear run
/// becomes entries with nothing protected.
pub fn push_subsample(out: &mut Vec<Subsample>, mut clear: usize, protected: usize) {
    while clear > usize::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        clear -= usize::from(u16::MAX);
    }
    out.push(Subsample {
        clear: clear as u16,
        protected: protected as u32,
    });
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("the subsamples cover {covered} bytes of a {len}-byte sample")]
    Mismatch { covered: usize, len: usize },
}

/// Encrypts one sample in place. `iv`: for 'cenc' the sample's 8-byte IV in
/// its first half (the block counter, the second half, starts at 0); for
/// 'cbcs' the constant IV. No subsamples: the whole sample is protected.
/// Decryption is the same call for 'cenc'; see [`decrypt_sample`].
pub fn encrypt_sample(
    scheme: Scheme,
    key: &Key16,
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
) -> Result<(), CryptError> {
    crypt(scheme, key, iv, sample, subsamples, true)
}

/// The inverse of [`encrypt_sample`] (for tests and checks).
pub fn decrypt_sample(
    scheme: Scheme,
    key: &Key16,
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
) -> Result<(), CryptError> {
    crypt(scheme, key, iv, sample, subsamples, false)
}

fn crypt(
    scheme: Scheme,
    key: &Key16,
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    encrypt: bool,
) -> Result<(), CryptError> {
    let whole = [Subsample {
        clear: 0,
        protected: sample.len() as u32,
    }];
    let subs = if subsamples.is_empty() {
        &whole[..]
    } else {
        subsamples
    };
    let covered: usize = subs
        .iter()
        .map(|s| usize::from(s.clear) + s.protected as usize)
        .sum();
    if covered != sample.len() {
        return Err(CryptError::Mismatch {
            covered,
            len: sample.len(),
        });
    }
    match scheme {
        Scheme::Cenc => {
            // One keystream over all protected bytes of the sample.
            let mut ctr = ctr::Ctr64BE::<Aes128>::new(key.into(), iv.into());
            let mut at = 0;
            for s in subs {
                at += usize::from(s.clear);
                let end = at + s.protected as usize;
                ctr.apply_keystream(&mut sample[at..end]);
                at = end;
            }
        }
        Scheme::Cbcs => {
            let aes = Aes128::new(key.into());
            let mut at = 0;
            for s in subs {
                at += usize::from(s.clear);
                let end = at + s.protected as usize;
                cbcs_range(&aes, iv, &mut sample[at..end], encrypt);
                at = end;
            }
        }
    }
    Ok(())
}

/// One protected range under 'cbcs': the chain starts from the constant
/// IV, runs through the encrypted blocks only (1, then 9 skipped), and a
/// partial block at the end stays clear.
fn cbcs_range(aes: &Aes128, iv: &[u8; 16], data: &mut [u8], encrypt: bool) {
    use aes::cipher::BlockDecrypt;
    let mut chain = *iv;
    let period = (CBCS_CRYPT_BLOCKS + CBCS_SKIP_BLOCKS) * BLOCK;
    let mut at = 0;
    while at + CBCS_CRYPT_BLOCKS * BLOCK <= data.len() {
        for b in 0..CBCS_CRYPT_BLOCKS {
            let start = at + b * BLOCK;
            let block = &mut data[start..start + BLOCK];
            if encrypt {
                for (x, c) in block.iter_mut().zip(chain.iter()) {
                    *x ^= c;
                }
                aes.encrypt_block(block.into());
                chain.copy_from_slice(block);
            } else {
                let mut cipher = [0u8; 16];
                cipher.copy_from_slice(block);
                aes.decrypt_block(block.into());
                for (x, c) in block.iter_mut().zip(chain.iter()) {
                    *x ^= c;
                }
                chain = cipher;
            }
        }
        at += period;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_base64url_and_hex() {
        // The seed's example key and KID.
        let k = parse_key16("hyN9IKGfWKdAwFaE5pm0qg").unwrap();
        assert_eq!(hex(&k), "87237d20a19f58a740c05684e699b4aa");
        let kid = parse_key16("oW5AK5BW43HzbTSKpiu3SQ").unwrap();
        assert_eq!(uuid(&kid), "a16e402b-9056-e371-f36d-348aa62bb749");
        assert_eq!(parse_key16(&hex(&k)).unwrap(), k);
        assert_eq!(parse_key16(&uuid(&kid)).unwrap(), kid);
        assert_eq!(parse_key16("hyN9IKGfWKdAwFaE5pm0qg==").unwrap(), k);
        for bad in [
            "",
            "short",
            "hyN9IKGfWKdAwFaE5pm0q",
            "hyN9IKGfWKdAwFaE5pm0qg0",
            "87237d20a19f58a740c05684e699b4a",
            "87237d20a19f58a740c05684e699b4zz",
            "hyN9IKGfWKdAwFaE5pm0q!",
        ] {
            assert!(parse_key16(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt), first two blocks: the
    /// counter block's low 64 bits count, as CENC's do.
    #[test]
    fn cenc_matches_the_nist_ctr_vector() {
        let key: Key16 = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let iv: [u8; 16] = [
            0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
            0xfe, 0xff,
        ];
        let mut data = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a, 0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac,
            0x45, 0xaf, 0x8e, 0x51,
        ];
        let want = [
            0x87, 0x4d, 0x61, 0x91, 0xb6, 0x20, 0xe3, 0x26, 0x1b, 0xef, 0x68, 0x64, 0x99, 0x0d,
            0xb6, 0xce, 0x98, 0x06, 0xf6, 0x6b, 0x79, 0x70, 0xfd, 0xff, 0x86, 0x17, 0x18, 0x7b,
            0xb9, 0xff, 0xfd, 0xff,
        ];
        encrypt_sample(Scheme::Cenc, &key, &iv, &mut data, &[]).unwrap();
        assert_eq!(data, want);
    }

    /// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt): a 'cbcs' range of one
    /// block is plain CBC.
    #[test]
    fn cbcs_first_block_matches_the_nist_cbc_vector() {
        let key: Key16 = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut data = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        encrypt_sample(Scheme::Cbcs, &key, &iv, &mut data, &[]).unwrap();
        assert_eq!(
            data,
            [
                0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9,
                0x19, 0x7d
            ]
        );
    }

    #[test]
    fn cbcs_encrypts_one_block_in_ten_and_leaves_the_tail_clear() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        // 5 clear, then 16 * 25 + 7 protected.
        let len = 5 + 16 * 25 + 7;
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let subs = [Subsample {
            clear: 5,
            protected: (len - 5) as u32,
        }];
        let mut data = plain.clone();
        encrypt_sample(Scheme::Cbcs, &key, &iv, &mut data, &subs).unwrap();
        for block in 0..26 {
            let start = 5 + block * 16;
            let end = (start + 16).min(len);
            let changed = data[start..end] != plain[start..end];
            // Blocks 0, 10 and 20 are encrypted; block 25 is the partial
            // tail.
            assert_eq!(changed, block % 10 == 0 && block < 25, "block {block}");
        }
        assert_eq!(data[..5], plain[..5]);
        decrypt_sample(Scheme::Cbcs, &key, &iv, &mut data, &subs).unwrap();
        assert_eq!(data, plain);
    }

    #[test]
    fn cbcs_restarts_the_chain_at_each_subsample() {
        let key = [1u8; 16];
        let iv = [2u8; 16];
        let block = [0x55u8; 16];
        // Two subsamples with the same clear and protected bytes encrypt
        // alike: the IV starts over.
        let mut data: Vec<u8> = [&[0u8; 3][..], &block, &[0u8; 3], &block].concat();
        let subs = [
            Subsample {
                clear: 3,
                protected: 16,
            },
            Subsample {
                clear: 3,
                protected: 16,
            },
        ];
        encrypt_sample(Scheme::Cbcs, &key, &iv, &mut data, &subs).unwrap();
        assert_eq!(data[3..19], data[22..38]);
        assert_ne!(data[3..19], block);
    }

    #[test]
    fn cenc_round_trips_with_subsamples() {
        let key = [3u8; 16];
        let iv = [0xab, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0];
        let plain: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
        let subs = [
            Subsample {
                clear: 10,
                protected: 64,
            },
            Subsample {
                clear: 20,
                protected: 200,
            },
            Subsample {
                clear: 6,
                protected: 0,
            },
        ];
        let mut data = plain.clone();
        encrypt_sample(Scheme::Cenc, &key, &iv, &mut data, &subs).unwrap();
        assert_eq!(data[..10], plain[..10]);
        assert_eq!(data[74..94], plain[74..94]);
        assert_eq!(data[294..], plain[294..]);
        assert_ne!(data[10..74], plain[10..74]);
        decrypt_sample(Scheme::Cenc, &key, &iv, &mut data, &subs).unwrap();
        assert_eq!(data, plain);
    }

    #[test]
    fn subsamples_must_cover_the_sample() {
        let mut data = [0u8; 10];
        let subs = [Subsample {
            clear: 2,
            protected: 5,
        }];
        assert!(encrypt_sample(Scheme::Cenc, &[0; 16], &[0; 16], &mut data, &subs).is_err());
    }

    #[test]
    fn long_clear_runs_split_into_senc_sized_entries() {
        let mut v = Vec::new();
        push_subsample(&mut v, 70_000, 32);
        assert_eq!(
            v,
            vec![
                Subsample {
                    clear: u16::MAX,
                    protected: 0
                },
                Subsample {
                    clear: (70_000 - 65_535) as u16,
                    protected: 32
                }
            ]
        );
    }
}
