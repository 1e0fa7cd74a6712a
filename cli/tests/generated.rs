//! The committed shell completions, man page and plan schema match what the code
//! generates. Run with `VFIO_MIGRATE_BLESS=1` to rewrite them after changing the CLI.

use std::path::Path;

fn check(root: &Path, name: &str, fresh: &[u8]) -> Option<String> {
    let path = root.join(name);
    if std::env::var_os("VFIO_MIGRATE_BLESS").is_some() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, fresh).expect("write generated file");
        return None;
    }
    match std::fs::read(&path) {
        Ok(committed) if committed == fresh => None,
        Ok(_) => Some(format!("{name} is stale")),
        Err(e) => Some(format!("{name} is missing: {e}")),
    }
}

#[test]
fn generated_files_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vfio_migrate::generate::generated_files();
    files.push((
        "docs/plan.schema.json".to_string(),
        format!("{}\n", plans::schema::plan_schema_json()).into_bytes(),
    ));
    let stale: Vec<String> = files
        .iter()
        .filter_map(|(name, fresh)| check(&root, name, fresh))
        .collect();
    assert!(
        stale.is_empty(),
        "{}; regenerate with `VFIO_MIGRATE_BLESS=1 cargo test -p vfio-migrate --test generated`",
        stale.join(", ")
    );
}

#[test]
fn the_docs_list_the_exit_codes_the_code_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let table = engine::ExitStatus::markdown_table();
    for doc in ["README.md", "docs/report.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("read doc");
        assert!(
            text.contains(&table),
            "{doc} must contain the exit code table:\n{table}"
        );
    }
}
