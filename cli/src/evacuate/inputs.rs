//! The plans an evacuation is given: files, or directories whose `*.toml` files are
//! plans (in name order, so a directory runs the same way every time).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The plan files named by `args`, in order. A directory without plans, a file given
/// twice, or a path that cannot be read is a usage mistake.
pub fn plan_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for arg in args {
        match std::fs::metadata(arg) {
            Ok(meta) if meta.is_dir() => {
                let found = tomls_in(arg)?;
                if found.is_empty() {
                    return Err(format!("{}: a directory without plans (*.toml)", arg.display()));
                }
                files.extend(found);
            }
            Ok(_) => files.push(arg.clone()),
            Err(e) => return Err(format!("{}: {e}", arg.display())),
        }
    }
    let mut seen = HashSet::new();
    for file in &files {
        let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
        if !seen.insert(key) {
            return Err(format!("{}: the same plan is given twice", file.display()));
        }
    }
    Ok(files)
}

fn tomls_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gives_its_plans_in_name_order_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.toml", "a.toml", "notes.txt"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        let files = plan_files(&[dir.path().to_path_buf()]).expect("plans");
        let names: Vec<_> = files.iter().filter_map(|f| f.file_name()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
    }

    #[test]
    fn a_plan_given_twice_or_an_empty_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = dir.path().join("a.toml");
        std::fs::write(&plan, "").expect("write");
        let twice = plan_files(&[plan.clone(), dir.path().to_path_buf()]).expect_err("twice");
        assert!(twice.contains("given twice"), "{twice}");
        let empty = tempfile::tempdir().expect("tempdir");
        let none = plan_files(&[empty.path().to_path_buf()]).expect_err("empty");
        assert!(none.contains("without plans"), "{none}");
    }
}
