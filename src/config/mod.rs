//! The configuration file (SPEC 7 and 10): the only module that knows YAML.
//!
//! A file is parsed, then validated, then frozen into a [`Config`]. Parsing never stops at the
//! first mistake: every problem is collected with the line and column of the key (or list item)
//! it concerns, so `ssebridge check` can print them all as `FILE:LINE:COLUMN: message`.
//!
//! How: serde_norway reads the text into a `Value` (a syntax error is one problem, at
//! serde_norway's location); `position.rs` reads the same text with yaml-rust2's event parser
//! to map each key path (`routes[1].upstream`) to its line and column; `parse.rs` and
//! `routes.rs` walk the `Value` with the readers of `values.rs`, turning each key into its typed
//! field and reporting each problem at its key. Nothing here does I/O except reading the files
//! the configuration names (certificates, keys, CA bundles) to check they can be read; relative
//! file paths are resolved against the configuration file's directory.

pub mod model;
mod parse;
mod position;
mod routes;
mod units;
mod urls;
mod values;

use std::fmt;
use std::path::Path;

pub use model::*;
pub use units::{parse_duration, parse_size};

/// One thing wrong with a configuration file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a configuration file was refused: it could not be read, or it holds problems (all of
/// them, sorted by position).
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// Empty when the file could not be read.
    pub problems: Vec<Problem>,
    /// Set when the file could not be read at all.
    #[source]
    pub unreadable: Option<std::io::Error>,
}

impl ConfigError {
    fn invalid(file: &str, problems: Vec<Problem>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            problems,
            unreadable: None,
        }
    }

    fn unreadable(file: &str, error: std::io::Error) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            problems: Vec::new(),
            unreadable: Some(error),
        }
    }
}

/// `cannot read FILE: reason`, or one line per problem: `FILE:LINE:COLUMN: message`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(error) = &self.unreadable {
            return write!(f, "cannot read {}: {error}", self.file);
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let Problem {
                line,
                column,
                message,
            } = problem;
            write!(f, "{}:{line}:{column}: {message}", self.file)?;
        }
        Ok(())
    }
}

/// Parses and validates the text of a configuration file. `file` names it in problems, and its
/// directory is where relative file paths in the configuration are resolved.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let base_dir = Path::new(file).parent().unwrap_or(Path::new(""));
    parse::parse_config(text, base_dir).map_err(|problems| ConfigError::invalid(file, problems))
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(&file, e))?;
    parse(&text, &file)
}

#[cfg(test)]
mod tests;
