//! Regex errors that only compiling the regex sets finds (the size limit, for one pattern or
//! for a set together) still name the file and line of the pattern to blame. The data files
//! are in `tests/fixtures/invalid/` (see the README there).

use shadowai_catalog::{Catalog, CatalogError};

/// Loads one fixture as the catalog's only data file, `data/<name>`; returns its problems.
fn problems_of(name: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/invalid/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let content = match std::fs::read_to_string(&path) {
        Ok(content) => content,
        Err(error) => panic!("{path}: {error}"),
    };
    match Catalog::from_files("1", vec![(format!("data/{name}"), content)]) {
        Ok(_) => panic!("{name} loaded, but it must be refused"),
        Err(CatalogError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected a data problem, got {other}"),
    }
}

#[test]
fn a_regex_over_the_size_limit_is_named_with_file_and_line() {
    let problems = problems_of("regex-too-big.toml");
    assert_eq!(
        problems,
        [
            "data/regex-too-big.toml:19: cmdline regex `a{1000}{1000}` does not compile: \
          Compiled regex exceeds size limit of 16777216 bytes."
        ],
    );
}

#[test]
fn a_set_over_the_size_limit_names_the_regex_that_tips_it_over() {
    let problems = problems_of("regex-set-too-big.toml");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = &problems[0];
    // The culprit is one of the twelve patterns, reported at its own line (15 to 26), as the
    // one that compiles alone but tips the set over.
    let (location, message) = problem.split_once(": ").unwrap();
    let line: usize = location
        .strip_prefix("data/regex-set-too-big.toml:")
        .and_then(|line| line.parse().ok())
        .unwrap_or_else(|| panic!("no file:line in {problem}"));
    assert!((16..=26).contains(&line), "{problem}");
    let index = line - 15;
    let number = index + 1;
    assert_eq!(
        message,
        format!(
            "cmdline regex `acme{index:02}\\w{{50}}` compiles alone, but its set does not from \
             this regex on, number {number} of 12 (Compiled regex exceeds size limit of \
             16777216 bytes.); shorten or simplify the set's regexes"
        ),
    );
}
