//! Reading hostile files: size-capped, never through a symlink that leaves the allowed base
//! (the user's home, or the scan root), never a FIFO or device, and parsed with real JSON,
//! JSONC, TOML and YAML parsers into a [`serde_json::Value`]. Nothing read is executed and no
//! host in it is resolved.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shadowai_catalog::ConfigFormat;

/// Largest config file read.
pub const MAX_FILE: u64 = 1024 * 1024;

/// Why a file could not be used. Missing files are not problems (`Ok(None)` from
/// [`read_capped`]); everything else is recorded and counted as an inventory problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// The file is bigger than [`MAX_FILE`].
    #[error("larger than {MAX_FILE} bytes: not read")]
    TooLarge,
    /// A symlink (or `..`) leads out of the allowed base.
    #[error("leads outside {0} (symlink): not followed")]
    OutsideBase(String),
    /// Not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// Could not be read.
    #[error("cannot read: {0}")]
    Unreadable(String),
    /// Did not parse.
    #[error("does not parse as {format}: {message}")]
    Parse {
        /// The format expected.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// Reads a regular file of at most [`MAX_FILE`] bytes whose real path lies under `base`.
/// `Ok(None)` when it does not exist.
pub fn read_capped(path: &Path, base: &Path) -> Result<Option<Vec<u8>>, FileProblem> {
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is "not there" unless it points out of the base.
            return match std::fs::symlink_metadata(path) {
                Ok(_) => Err(FileProblem::OutsideBase(base.display().to_string())),
                Err(_) => Ok(None),
            };
        }
        Err(error) => return Err(FileProblem::Unreadable(error.to_string())),
    };
    let real_base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    if !real.starts_with(&real_base) {
        return Err(FileProblem::OutsideBase(base.display().to_string()));
    }
    let file = open_no_follow(&real).map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(FileProblem::NotAFile);
    }
    if meta.len() > MAX_FILE {
        return Err(FileProblem::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(FileProblem::TooLarge);
    }
    Ok(Some(bytes))
}

/// Opens without following a final symlink and without blocking on a FIFO.
#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Parses a config file's bytes.
pub fn parse(bytes: &[u8], format: ConfigFormat) -> Result<Value, FileProblem> {
    let problem = |message: String| FileProblem::Parse {
        format: format.as_str(),
        message,
    };
    match format {
        ConfigFormat::Json => serde_json::from_slice(bytes).map_err(|e| problem(e.to_string())),
        ConfigFormat::Jsonc => {
            let plain = strip_jsonc(bytes).map_err(problem)?;
            serde_json::from_slice(&plain).map_err(|e| problem(e.to_string()))
        }
        ConfigFormat::Toml => {
            let text = std::str::from_utf8(bytes).map_err(|e| problem(e.to_string()))?;
            let table: toml::Table = toml::from_str(text).map_err(|e| problem(e.to_string()))?;
            serde_json::to_value(table).map_err(|e| problem(e.to_string()))
        }
        ConfigFormat::Yaml => {
            // libyaml's scanner is slow (minutes for 1 MiB) on deeply nested flow collections,
            // before the deserializer's own recursion limit applies: refuse those first.
            check_yaml_nesting(bytes).map_err(problem)?;
            serde_yaml_ng::from_slice::<Value>(bytes).map_err(|e| problem(e.to_string()))
        }
    }
}

/// Deepest flow nesting (`[`/`{`) and indentation a YAML config may have.
const MAX_YAML_FLOW_DEPTH: usize = 64;
const MAX_YAML_INDENT: usize = 512;

/// Refuses YAML nested deeper than any real config: flow brackets outside quotes, and line
/// indentation.
fn check_yaml_nesting(bytes: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut indent = 0usize;
    let mut at_line_start = true;
    let mut in_comment = false;
    let mut previous = b' ';
    for &byte in bytes {
        if byte == b'\n' {
            // Quoted scalars may span lines, but closing them here only over-counts (refusing
            // a strange file), never under-counts.
            at_line_start = true;
            indent = 0;
            in_comment = false;
            quote = None;
            previous = b' ';
            continue;
        }
        if at_line_start {
            if byte == b' ' {
                indent += 1;
                if indent > MAX_YAML_INDENT {
                    return Err(format!("indented deeper than {MAX_YAML_INDENT} columns"));
                }
                continue;
            }
            at_line_start = false;
        }
        if in_comment {
            continue;
        }
        match quote {
            Some(open) => {
                if byte == open {
                    quote = None;
                }
            }
            None => match byte {
                // A quote opens a scalar only at its start (`it's` is a plain word).
                b'"' | b'\'' if matches!(previous, b' ' | b'\t' | b'[' | b'{' | b',' | b':') => {
                    quote = Some(byte)
                }
                b'#' => in_comment = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_YAML_FLOW_DEPTH {
                        return Err(format!("nested deeper than {MAX_YAML_FLOW_DEPTH} levels"));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        previous = byte;
    }
    Ok(())
}

/// JSON with comments and trailing commas (VS Code's settings) to plain JSON: comments via
/// `json_comments`, then commas before `}` or `]` outside strings become spaces.
pub fn strip_jsonc(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut plain = Vec::with_capacity(bytes.len());
    json_comments::StripComments::new(bytes)
        .read_to_end(&mut plain)
        .map_err(|e| e.to_string())?;
    let mut in_string = false;
    let mut escaped = false;
    let mut last_comma: Option<usize> = None;
    for at in 0..plain.len() {
        let Some(&byte) = plain.get(at) else { break };
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                last_comma = None;
            }
            b',' => last_comma = Some(at),
            b'}' | b']' => {
                if let Some(comma) = last_comma.take()
                    && let Some(slot) = plain.get_mut(comma)
                {
                    *slot = b' ';
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => last_comma = None,
        }
    }
    Ok(plain)
}

/// The canonical form of a directory, or the path itself.
pub fn real_dir(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_comments_and_trailing_commas_are_accepted() {
        let text = br#"{
  // a comment
  "chat.tools.autoApprove": true, /* block */
  "url": "http://x/y, ]", // not a trailing comma
  "list": [1, 2,],
}"#;
        let value = parse(text, ConfigFormat::Jsonc).unwrap();
        assert_eq!(value["chat.tools.autoApprove"], true);
        assert_eq!(value["url"], "http://x/y, ]");
        assert_eq!(value["list"], serde_json::json!([1, 2]));
    }

    #[test]
    fn every_prefix_of_every_format_is_survived() {
        let samples: [(&[u8], ConfigFormat); 4] = [
            (
                br#"{"mcpServers":{"a":{"command":"npx","args":["-y","x"]}}}"#,
                ConfigFormat::Json,
            ),
            (b"{\n// c\n\"a\": [1,],\n}", ConfigFormat::Jsonc),
            (
                b"approval_policy = \"never\"\n[mcp_servers.x]\ncommand = \"npx\"\n",
                ConfigFormat::Toml,
            ),
            (
                b"mcpServers:\n  - name: x\n    command: npx\n",
                ConfigFormat::Yaml,
            ),
        ];
        for (bytes, format) in samples {
            assert!(parse(bytes, format).is_ok(), "{format:?}");
            for end in 0..bytes.len() {
                let _ = parse(&bytes[..end], format);
            }
        }
    }

    #[test]
    fn deep_nesting_and_invalid_utf8_are_errors_not_crashes() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for format in [ConfigFormat::Json, ConfigFormat::Jsonc, ConfigFormat::Toml] {
            assert!(parse(deep.as_bytes(), format).is_err(), "{format:?}");
        }
        let deep_yaml = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep_yaml.as_bytes(), ConfigFormat::Yaml).is_err());
        let hidden = format!("a: [it's, {}]", "[".repeat(100_000));
        assert!(check_yaml_nesting(hidden.as_bytes()).is_err());
        let hidden = format!("a: it's\n{}", "{".repeat(100_000));
        assert!(check_yaml_nesting(hidden.as_bytes()).is_err());
        assert!(
            check_yaml_nesting(
                b"a: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['"
            )
            .is_ok()
        );
        let deep_block: String = (0..2000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(parse(deep_block.as_bytes(), ConfigFormat::Yaml).is_err());
        let deep_toml = format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep_toml.as_bytes(), ConfigFormat::Toml).is_err());
        for format in [
            ConfigFormat::Json,
            ConfigFormat::Jsonc,
            ConfigFormat::Toml,
            ConfigFormat::Yaml,
        ] {
            assert!(
                parse(b"{\"a\": \"\xff\xfe\"}", format).is_err(),
                "{format:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_are_capped_and_symlinks_stay_inside_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join("ok.json"), b"{}").unwrap();
        assert_eq!(
            read_capped(&home.join("ok.json"), &home).unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(read_capped(&home.join("missing.json"), &home), Ok(None));
        std::fs::write(home.join("big.json"), vec![b' '; (MAX_FILE + 1) as usize]).unwrap();
        assert_eq!(
            read_capped(&home.join("big.json"), &home),
            Err(FileProblem::TooLarge)
        );
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), home.join("link.json")).unwrap();
        assert!(matches!(
            read_capped(&home.join("link.json"), &home),
            Err(FileProblem::OutsideBase(_))
        ));
        std::os::unix::fs::symlink("/etc/shadow", home.join("shadow.json")).unwrap();
        assert!(matches!(
            read_capped(&home.join("shadow.json"), &home),
            Err(FileProblem::OutsideBase(_))
        ));
        std::os::unix::fs::symlink(home.join("ok.json"), home.join("inside.json")).unwrap();
        assert!(
            read_capped(&home.join("inside.json"), &home)
                .unwrap()
                .is_some()
        );
        rustix::fs::mknodat(
            rustix::fs::CWD,
            home.join("fifo.json"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(
            read_capped(&home.join("fifo.json"), &home),
            Err(FileProblem::NotAFile)
        );
        assert_eq!(read_capped(&home, &home), Err(FileProblem::NotAFile));
    }
}
