//! Errors of loading a catalog.

use std::fmt;

/// One thing wrong with a catalog data file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The data file, e.g. `data/ollama.toml`.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a catalog could not be loaded. A catalog with any problem is refused as a whole, so that
/// an agent keeps its last good catalog instead of running half of a broken one.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The data files have problems.
    #[error("catalog is invalid ({} problem(s)):\n{}", .0.len(), ProblemList(.0))]
    Invalid(Vec<Problem>),
    /// The bundle itself (not a data file in it) is malformed.
    #[error("catalog bundle is malformed: {reason}")]
    Bundle {
        /// What is wrong.
        reason: String,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "  {problem}")?;
        }
        Ok(())
    }
}
