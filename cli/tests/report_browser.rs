//! The HTML report in a real browser: headless Chromium opens the page drawn from a
//! demo report, takes a screenshot and dumps its DOM. The page must render (the
//! screenshot has the window's size and is not blank), log no console errors (a script
//! error or a Content-Security-Policy refusal would show up there) and hold the chart's
//! SVG in its DOM.
//!
//! Needs `chromium` (Debian's package; `scripts/install-deps` installs it). Without one
//! the test says it is skipped, except with `CI_REQUIRE_BROWSER=1` (set by `.ci/run`).
//! With `VFIO_MIGRATE_BLESS=1` it also writes its screenshot to
//! `docs/report-screenshot.png`, which the README shows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vfio_migrate::chart::{page, View};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;

/// The browser to use: `$VFIO_MIGRATE_CHROMIUM`, else the first Chromium on PATH.
fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VFIO_MIGRATE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&paths).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs Chromium headless on `url` with `extra` flags, killing it after a minute.
fn chromium(browser: &Path, profile: &Path, url: &str, extra: &[String]) -> Output {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for chromium").is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("chromium's output")
}

/// What the page made the console say. The page has no scripts and fetches nothing, so
/// any console line is a fault: a script error (`Uncaught ...`), or the page's
/// Content-Security-Policy refusing something it tried to load.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// The screenshot's size and how many distinct colours it has.
fn picture(png_path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(png_path).expect("the screenshot");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    let mut colours: Vec<&[u8]> = buf[..info.buffer_size()].chunks(step).collect();
    colours.sort_unstable();
    colours.dedup();
    (info.width, info.height, colours.len())
}

#[test]
fn the_html_report_renders_in_a_headless_browser_without_console_errors() {
    let Some(browser) = browser() else {
        let why = "no chromium on PATH (install Debian's `chromium`, e.g. with scripts/install-deps)";
        assert!(
            std::env::var("CI_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "{why}; CI_REQUIRE_BROWSER=1 forbids skipping"
        );
        eprintln!("skipped: {why}");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(root.join("tests/fixtures/reports/force.json")).expect("fixture");
    let view = View::from_json(&json).expect("a report");
    let dir = tempfile::tempdir().expect("temporary directory");
    let html = dir.path().join("report.html");
    std::fs::write(&html, page::html(&view)).expect("write the page");
    let url = format!("file://{}", html.display());

    let shot = dir.path().join("shot.png");
    let run = chromium(
        &browser,
        &dir.path().join("profile-shot"),
        &url,
        &[format!("--screenshot={}", shot.display())],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "chromium failed: {stderr}");
    assert_eq!(console_errors(&stderr), Vec::<&str>::new(), "console errors");
    let (width, height, colours) = picture(&shot);
    assert_eq!(
        (width, height),
        (WIDTH, HEIGHT),
        "the screenshot has the window's size"
    );
    assert!(colours > 16, "the page rendered: {colours} distinct colours");

    let dom = chromium(
        &browser,
        &dir.path().join("profile-dom"),
        &url,
        &["--dump-dom".to_string()],
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert_eq!(
        console_errors(&String::from_utf8_lossy(&dom.stderr)),
        Vec::<&str>::new()
    );
    assert!(
        dom_text.contains(r#"class="vfio-migrate-chart""#),
        "the SVG is in the DOM"
    );
    assert_eq!(
        dom_text.matches("<polyline").count(),
        vfio_migrate::chart::series::series(&view).len(),
        "every series' line made it into the DOM"
    );
    assert_eq!(dom_text.matches(r#"class="action""#).count(), view.actions.len());

    if std::env::var_os("VFIO_MIGRATE_BLESS").is_some() {
        std::fs::copy(&shot, root.join("../docs/report-screenshot.png")).expect("keep the screenshot");
    }
}
