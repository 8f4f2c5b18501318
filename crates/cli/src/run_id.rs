//! The run id `stint run` uses without `--run-id`: running the same command again in the same
//! folder finds the same run, so an interrupted task resumes and a finished one is not run twice.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Longest readable part of a derived run id, in bytes.
const SLUG_BYTES: usize = 40;

/// The run id of `command` run in the current folder: a readable slug of the command line and a
/// hash of the folder and the command line, e.g. `sh-count.sh-3f9a2c1b` for `sh
/// examples/count.sh`. Stable across stint versions and machines for the same folder path.
pub(crate) fn default_run_id(command: &[String]) -> String {
    let dir = std::env::current_dir().ok();
    derive(dir.as_deref(), command)
}

fn derive(dir: Option<&Path>, command: &[String]) -> String {
    let mut hash = Fnv1a::new();
    if let Some(dir) = dir {
        hash.write(dir.as_os_str().as_bytes());
    }
    for word in command {
        hash.write(&[0]);
        hash.write(word.as_bytes());
    }
    format!("{}-{:08x}", slug(command), hash.fold32())
}

/// The command line in id-friendly characters: paths shortened to their last part, flags without
/// their dashes, everything but letters, digits, `.` and `_` turned into `-`.
fn slug(command: &[String]) -> String {
    let mut slug = String::new();
    for word in command {
        let word = if word.contains(char::is_whitespace) {
            word.as_str()
        } else {
            word.rsplit('/').find(|part| !part.is_empty()).unwrap_or("")
        };
        for c in word.chars() {
            let c = if c.is_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            };
            if c != '-' || !(slug.is_empty() || slug.ends_with('-')) {
                slug.push(c);
            }
        }
        if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() > SLUG_BYTES {
            break;
        }
    }
    let cut = (0..=SLUG_BYTES.min(slug.len()))
        .rev()
        .find(|&i| slug.is_char_boundary(i))
        .unwrap_or(0);
    slug.truncate(cut);
    let slug = slug.trim_end_matches(['-', '.']);
    if slug.is_empty() {
        "run".to_owned()
    } else {
        slug.to_owned()
    }
}

/// 64-bit FNV-1a: tiny, and the same on every platform and version (unlike std's hasher).
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn fold32(&self) -> u32 {
        // Truncation is the point: the two halves folded into 32 bits.
        (self.0 ^ (self.0 >> 32)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &[&str]) -> Vec<String> {
        line.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_slug_reads_like_the_command() {
        assert_eq!(slug(&words(&["sh", "examples/count.sh"])), "sh-count.sh");
        assert_eq!(
            slug(&words(&["/usr/bin/make", "-j4", "test"])),
            "make-j4-test"
        );
        assert_eq!(
            slug(&words(&["sh", "-c", "echo 1 && ls /"])),
            "sh-c-echo-1-ls"
        );
        assert_eq!(slug(&words(&["--", "/"])), "run");
        assert_eq!(slug(&words(&["./été.sh"])), "été.sh");
        let long = slug(&words(&["python", &"x".repeat(100)]));
        assert_eq!(long.len(), SLUG_BYTES);
        let wide = slug(&["é".repeat(30)]);
        assert_eq!(wide, "é".repeat(20), "cut on a character boundary");
    }

    #[test]
    fn the_same_command_in_the_same_folder_has_the_same_id() {
        let here = Path::new("/home/me/project");
        let count = words(&["sh", "examples/count.sh"]);
        let id = derive(Some(here), &count);
        assert_eq!(id, derive(Some(here), &count));
        assert!(id.starts_with("sh-count.sh-") && id.len() == "sh-count.sh-".len() + 8);
        assert_ne!(id, derive(Some(Path::new("/home/me/other")), &count));
        assert_ne!(
            id,
            derive(Some(here), &words(&["sh", "examples/count.sh", "2"]))
        );
        // Word boundaries count: `a b` is not `ab`.
        assert_ne!(
            derive(Some(here), &words(&["a", "b"])),
            derive(Some(here), &words(&["ab"]))
        );
    }

    #[test]
    fn the_hash_is_fnv1a() {
        let mut hash = Fnv1a::new();
        hash.write(b"a");
        assert_eq!(hash.0, 0xaf63_dc4c_8601_ec8c);
    }
}
