//! Golden tests (`xtask/test_data/entrypoint/`), property tests over generated files, and
//! the file layer (atomic write, mode kept, refusals leave the file untouched).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::edit::{self, Mode};
use super::{apply_file, check_file, status_file};
use crate::failure::Failure;

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/entrypoint")
}

fn default_steps() -> Vec<String> {
    vec!["db:create".to_string(), "db:seed".to_string()]
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("xtask-entrypoint-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Shows both texts with visible line endings, so a CRLF or final-newline slip is obvious.
fn assert_text(actual: &str, expected: &str, what: &str) {
    if actual != expected {
        let show = |t: &str| t.replace('\r', "\\r").replace('\n', "\\n\n");
        panic!("{what}: mismatch\n--- expected\n{}\n--- actual\n{}", show(expected), show(actual));
    }
}

// ---- golden cases ----------------------------------------------------------------------

/// Every case directory holds `first.sh` and `later.sh` (and may hold `input.sh` and
/// `steps`): each of its files, put in either mode, gives exactly that mode's file.
#[test]
fn golden_cases() {
    let mut cases: Vec<PathBuf> = fs::read_dir(test_data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "refuse"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let steps = match fs::read_to_string(case.join("steps")) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => default_steps(),
        };
        let first = read(&case.join("first.sh"));
        let later = read(&case.join("later.sh"));
        let mut inputs = vec![("first.sh", first.clone()), ("later.sh", later.clone())];
        if let Ok(input) = fs::read_to_string(case.join("input.sh")) {
            inputs.push(("input.sh", input));
        }
        for (file, input) in inputs {
            for (mode, expected) in [(Mode::First, &first), (Mode::Later, &later)] {
                let actual = edit::apply(&input, mode, &steps)
                    .unwrap_or_else(|r| panic!("{name}/{file} in {mode} mode refused: {r}"));
                assert_text(&actual, expected, &format!("{name}/{file} in {mode} mode"));
            }
        }
        assert_eq!(edit::status(&first, &steps).unwrap().mode(), Some(Mode::First), "{name}");
        assert_eq!(edit::status(&later, &steps).unwrap().mode(), Some(Mode::Later), "{name}");
    }
}

/// The chapter's pair, spelled out: `later` turns the before text into the after text.
#[test]
fn chapter_pair_both_ways() {
    let before = read(&test_data().join("chapter/first.sh"));
    let after = read(&test_data().join("chapter/later.sh"));
    assert_text(&edit::apply(&before, Mode::Later, &default_steps()).unwrap(), &after, "later");
    assert_text(&edit::apply(&after, Mode::First, &default_steps()).unwrap(), &before, "first");
    let diff = edit::unified_diff("rails/entrypoint.prod.sh", &before, &after);
    assert_text(&diff, &read(&test_data().join("chapter/later.diff")), "diff");
}

/// The repository's own entrypoint is the chapter's before text, or its after text while a
/// deploy has it in later mode.
#[test]
fn repository_entrypoint_is_the_chapters() {
    let own = read(&crate::project::root().join("rails/entrypoint.prod.sh"));
    let first = read(&test_data().join("chapter/first.sh"));
    let later = read(&test_data().join("chapter/later.sh"));
    assert!(own == first || own == later, "rails/entrypoint.prod.sh is neither golden text");
}

/// Each `refuse/NAME.sh` is refused with `NAME.err` in both modes, or with `NAME.later.err`
/// in later mode only (first mode must then succeed).
#[test]
fn golden_refusals() {
    let dir = test_data().join("refuse");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "refusal cases missing: {cases:?}");
    for case in cases {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let text = read(&case);
        let both = fs::read_to_string(dir.join(format!("{stem}.err"))).ok();
        for mode in [Mode::First, Mode::Later] {
            let only = fs::read_to_string(dir.join(format!("{stem}.{mode}.err"))).ok();
            let expected = only.or_else(|| both.clone());
            let result = edit::apply(&text, mode, &default_steps());
            match (expected, result) {
                (Some(expected), Err(refusal)) => {
                    assert_eq!(refusal.to_string(), expected.trim_end(), "{stem} in {mode} mode")
                }
                (Some(_), Ok(_)) => panic!("{stem} in {mode} mode was not refused"),
                (None, Err(refusal)) => panic!("{stem} in {mode} mode refused: {refusal}"),
                (None, Ok(_)) => {}
            }
        }
    }
}

/// The refusals again, through the file layer: exit class `Input`, the line in the
/// message, and the file byte for byte as it was, mode included.
#[test]
fn refused_files_are_left_untouched() {
    let dir = TempDir::new();
    let refuse = test_data().join("refuse");
    for entry in fs::read_dir(&refuse).unwrap() {
        let case = entry.unwrap().path();
        if case.extension().is_none_or(|e| e != "sh") {
            continue;
        }
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&case);
        let path = dir.file(&name, &text, 0o755);
        for mode in [Mode::First, Mode::Later] {
            let Err(err) = apply_file(&path, mode, &default_steps()) else {
                continue;
            };
            assert_eq!(Failure::of(&err), Some(Failure::Input), "{name}: {err:#}");
            assert!(format!("{err:#}").contains(&name), "{name}: {err:#}");
            assert_eq!(read(&path), text, "{name} changed in {mode} mode");
            assert_eq!(mode_of(&path), 0o755, "{name}");
        }
    }
    assert!(dir.names().iter().all(|n| n.ends_with(".sh") && !n.starts_with('.')));
}

#[test]
fn configuration_is_checked() {
    let text = read(&test_data().join("chapter/first.sh"));
    let refuse = |steps: &[&str]| {
        let steps: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        edit::apply(&text, Mode::Later, &steps).unwrap_err().to_string()
    };
    assert!(refuse(&["db:create", "db:migrate"]).contains("must run on every deploy"));
    assert!(refuse(&[]).contains("is empty"));
    assert!(refuse(&["rails db:seed"]).contains("is not a rake task name"));
    let twice = ["db:seed", "db:seed", "db:create"].map(String::from);
    let status = edit::status(&text, &twice).unwrap();
    let names: Vec<&str> = status.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(names, ["db:seed", "db:create"]);
}

// ---- status and check ------------------------------------------------------------------

#[test]
fn status_is_step_by_step() {
    let mixed = read(&test_data().join("mixed/input.sh"));
    let status = edit::status(&mixed, &default_steps()).unwrap();
    assert_eq!(status.mode(), None);
    assert_eq!(
        status.describe("entrypoint.sh"),
        "entrypoint.sh: mixed\n\
         \x20 db:create  later (commented out)  line 4, echo line 3\n\
         \x20 db:seed    first (runs)           line 7, echo line 6\n"
    );
    assert_eq!(status.differences(Mode::Later), ["`db:seed` is active on line 7"]);
    assert_eq!(status.differences(Mode::First), ["`db:create` is commented out on line 4"]);
}

#[test]
fn an_echo_out_of_step_makes_the_file_mixed() {
    let text =
        "# echo \"rails db:create\"\nrails db:create\necho \"rails db:seed\"\n# rails db:seed\n";
    let status = edit::status(text, &default_steps()).unwrap();
    assert_eq!(status.mode(), None);
    assert_eq!(
        status.differences(Mode::Later),
        ["`db:create` is active on line 2", "the echo line of `db:seed` on line 3 is active"]
    );
    assert!(
        status.describe("f").contains("(echo line 3 still active)"),
        "{}",
        status.describe("f")
    );
    let later = edit::apply(text, Mode::Later, &default_steps()).unwrap();
    assert_eq!(edit::status(&later, &default_steps()).unwrap().mode(), Some(Mode::Later));
}

// ---- the file layer --------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn apply_file_writes_atomically_and_keeps_the_mode() {
    let dir = TempDir::new();
    let before = read(&test_data().join("chapter/first.sh"));
    let after = read(&test_data().join("chapter/later.sh"));
    let path = dir.file("entrypoint.prod.sh", &before, 0o750);

    let applied = apply_file(&path, Mode::Later, &default_steps()).unwrap();
    assert!(applied.changed);
    assert_eq!(applied.status.mode(), Some(Mode::Later));
    assert!(applied.diff.contains("+# bundle exec rails db:seed RAILS_ENV=production\n"));
    assert_text(&read(&path), &after, "file after later");
    assert_eq!(mode_of(&path), 0o750);
    assert_eq!(dir.names(), ["entrypoint.prod.sh"], "a temporary file was left behind");

    let again = apply_file(&path, Mode::Later, &default_steps()).unwrap();
    assert!(!again.changed);
    assert!(again.diff.is_empty());
    check_file(&path, Mode::Later, &default_steps()).unwrap();
    let err = check_file(&path, Mode::First, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));
    assert!(format!("{err:#}").contains("`db:create` is commented out on line 10"), "{err:#}");
    assert_eq!(status_file(&path, &default_steps()).unwrap().mode(), Some(Mode::Later));

    apply_file(&path, Mode::First, &default_steps()).unwrap();
    assert_text(&read(&path), &before, "file after first");
    assert_eq!(mode_of(&path), 0o750);
}

#[test]
fn a_symlink_is_followed_not_replaced() {
    let dir = TempDir::new();
    let before = read(&test_data().join("chapter/first.sh"));
    let real = dir.file("real.sh", &before, 0o755);
    let link = dir.0.join("link.sh");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    apply_file(&link, Mode::Later, &default_steps()).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_text(&read(&real), &read(&test_data().join("chapter/later.sh")), "through a link");
}

#[test]
fn a_read_only_file_is_refused_when_it_must_change() {
    let dir = TempDir::new();
    let before = read(&test_data().join("chapter/first.sh"));
    let path = dir.file("entrypoint.prod.sh", &before, 0o555);
    let err = apply_file(&path, Mode::Later, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));
    assert!(format!("{err:#}").contains("is read-only: make it writable"), "{err:#}");
    assert_eq!(read(&path), before);
    assert_eq!(mode_of(&path), 0o555);
    // Already in the mode: nothing to write, so a read-only checkout deploys fine.
    assert!(!apply_file(&path, Mode::First, &default_steps()).unwrap().changed);
}

/// A write that fails half way (here: the temporary file cannot be created) leaves the
/// entrypoint whole and removes nothing it did not make.
#[test]
fn a_failed_write_leaves_the_file_whole() {
    let dir = TempDir::new();
    let before = read(&test_data().join("chapter/first.sh"));
    let path = dir.file("entrypoint.prod.sh", &before, 0o755);
    let squatter = dir.0.join(format!(".entrypoint.prod.sh.xtask-{}.tmp", std::process::id()));
    fs::write(&squatter, "not ours").unwrap();
    let err = apply_file(&path, Mode::Later, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));
    assert!(format!("{err:#}").contains("(left unchanged)"), "{err:#}");
    assert_eq!(read(&path), before);
    assert_eq!(mode_of(&path), 0o755);
    assert_eq!(read(&squatter), "not ours");
}

#[test]
fn unreadable_files_are_refused() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.sh");
    let err = apply_file(&missing, Mode::Later, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));
    assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    assert!(!missing.exists());

    let err = apply_file(&dir.0, Mode::Later, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));

    let latin1 = dir.0.join("latin1.sh");
    fs::write(&latin1, b"echo \"caf\xe9\"\nbundle exec rails db:seed\n").unwrap();
    let err = apply_file(&latin1, Mode::Later, &default_steps()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Input));
    assert!(format!("{err:#}").contains("is not UTF-8"), "{err:#}");
    assert_eq!(fs::read(&latin1).unwrap(), b"echo \"caf\xe9\"\nbundle exec rails db:seed\n");
}

// ---- properties over generated files ---------------------------------------------------

/// splitmix64: a tiny deterministic generator, so every run tests the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Lines that are neither a step nor its echo; some mention the steps in prose or are
/// their neighbours (`db:create_something`), none may change.
const OTHER_LINES: [&str; 14] = [
    "",
    "set -e",
    "echo \"Start entrypoint.prod.sh\"",
    "rm -f /myapp/tmp/pids/server.pid",
    "bundle exec rails db:migrate RAILS_ENV=production",
    "# db:seed runs on the first deploy only",
    "# bundle exec rails db:create only once, see the README",
    "bundle exec rails db:create_something",
    "bundle exec rails db:seed:replant",
    "bundle exec pumactl start # db:seed ran above",
    "export DATABASE_HOST=db",
    "#",
    "  # indented prose about rails db:seed",
    "echo \"done\"",
];

const SPELLINGS: [&str; 6] = [
    "bundle exec rails {} RAILS_ENV=production",
    "RAILS_ENV=production bundle exec rails {}",
    "bin/rails {}",
    "bundle exec rake {}",
    "rails {} --trace",
    "bundle exec rails {} >> log/first_deploy.log 2>&1",
];

struct Generated {
    text: String,
    steps: Vec<String>,
    /// Per line: whether it belongs to a configured step (its command or echo).
    is_step: Vec<bool>,
}

fn generate(rng: &mut Rng) -> Generated {
    let mut steps = default_steps();
    if rng.chance(30) {
        steps.insert(1, "db:schema:load".to_string());
    }
    // Each block is a list of (line, is_step).
    let mut blocks: Vec<Vec<(String, bool)>> = Vec::new();
    for step in &steps {
        let indent = rng.pick(&["", "  ", "\t", "    "]);
        let marker = |rng: &mut Rng| rng.pick(&["", "", "# ", "#", "#  "]);
        let command = rng.pick(&SPELLINGS).replace("{}", step);
        let mut block = Vec::new();
        if rng.chance(60) {
            let echo = if rng.chance(50) {
                format!("echo \"{command}\"")
            } else {
                format!("echo '{step}'")
            };
            block.push((format!("{indent}{}{echo}", marker(rng)), true));
        }
        block.push((format!("{indent}{}{command}", marker(rng)), true));
        if rng.chance(25) {
            // Inside a block that keeps a command of its own, so later mode stays valid bash.
            block.insert(0, ("if [ -z \"$SKIP_DB\" ]; then".to_string(), false));
            block.push(("  true".to_string(), false));
            block.push(("fi".to_string(), false));
        }
        blocks.push(block);
    }
    for _ in 0..rng.below(12) {
        let line = rng.pick(&OTHER_LINES).to_string();
        blocks.push(vec![(line, false)]);
    }
    // Shuffle (Fisher-Yates), then keep the shebang first.
    for i in (1..blocks.len()).rev() {
        let j = rng.below(i + 1);
        blocks.swap(i, j);
    }
    let crlf = rng.chance(50);
    let lines: Vec<(String, bool)> = std::iter::once(("#!/bin/bash".to_string(), false))
        .chain(blocks.into_iter().flatten())
        .collect();
    let mut text = String::new();
    for (n, (line, _)) in lines.iter().enumerate() {
        text.push_str(line);
        let last = n + 1 == lines.len();
        if !last || line.is_empty() || rng.chance(80) {
            text.push_str(if crlf != rng.chance(10) { "\r\n" } else { "\n" });
        }
    }
    Generated { text, steps, is_step: lines.iter().map(|(_, s)| *s).collect() }
}

fn raw_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn line_ending(raw: &str) -> &str {
    let content = raw.trim_end_matches(['\r', '\n']);
    &raw[content.len()..]
}

#[test]
fn properties_hold_over_generated_files() {
    let mut rng = Rng(0x5EED_2023_0818);
    for case in 0..1500 {
        let g = generate(&mut rng);
        let x = g.text.as_str();
        let apply = |text: &str, mode: Mode| {
            edit::apply(text, mode, &g.steps)
                .unwrap_or_else(|r| panic!("case {case} refused in {mode} mode: {r}\n{text}"))
        };
        let first = apply(x, Mode::First);
        let later = apply(x, Mode::Later);
        let ctx = || format!("case {case}:\n{x}");
        assert_eq!(apply(&first, Mode::Later), later, "later(first(x)) != later(x), {}", ctx());
        assert_eq!(apply(&later, Mode::First), first, "first(later(x)) != first(x), {}", ctx());
        assert_eq!(apply(&first, Mode::First), first, "first is not idempotent, {}", ctx());
        assert_eq!(apply(&later, Mode::Later), later, "later is not idempotent, {}", ctx());
        assert_eq!(edit::status(&first, &g.steps).unwrap().mode(), Some(Mode::First), "{}", ctx());
        assert_eq!(edit::status(&later, &g.steps).unwrap().mode(), Some(Mode::Later), "{}", ctx());

        let (xs, fs_, ls) = (raw_lines(x), raw_lines(&first), raw_lines(&later));
        assert_eq!(xs.len(), g.is_step.len(), "{}", ctx());
        assert_eq!((fs_.len(), ls.len()), (xs.len(), xs.len()), "{}", ctx());
        for (i, &is_step) in g.is_step.iter().enumerate() {
            let ending = line_ending(xs[i]);
            assert_eq!(line_ending(fs_[i]), ending, "line {} ending, {}", i + 1, ctx());
            assert_eq!(line_ending(ls[i]), ending, "line {} ending, {}", i + 1, ctx());
            if is_step {
                assert!(
                    !fs_[i].trim_start().starts_with('#'),
                    "line {} not active, {}",
                    i + 1,
                    ctx()
                );
                let body = ls[i].trim_start_matches([' ', '\t']);
                assert!(body.starts_with("# "), "line {} not commented, {}", i + 1, ctx());
            } else {
                assert_eq!(fs_[i], xs[i], "other line {} changed in first mode, {}", i + 1, ctx());
                assert_eq!(ls[i], xs[i], "other line {} changed in later mode, {}", i + 1, ctx());
            }
        }
    }
}

/// A step alone in an `if` block cannot be commented out (bash rejects an empty block), in
/// any generated shape; first mode still works.
#[test]
fn steps_alone_in_a_block_are_refused_in_later_mode() {
    let mut rng = Rng(7);
    for case in 0..200 {
        let opener = rng.pick(&["if [ -n \"$FIRST\" ]; then", "while false; do", "seed() {"]);
        let closer = match opener.chars().last() {
            Some('n') => "fi",
            Some('o') => "done",
            _ => "}",
        };
        let blank = rng.pick(&["", "  # a note", "\t"]);
        let active = rng.pick(&["", "# "]);
        let text = format!(
            "{opener}\n  {active}rails db:create\n{blank}\n  bundle exec rails db:seed\n{closer}\n"
        );
        let refusal = edit::apply(&text, Mode::Later, &default_steps())
            .expect_err(&format!("case {case} was not refused:\n{text}"));
        assert!(refusal.to_string().contains("without a command"), "case {case}: {refusal}");
        edit::apply(&text, Mode::First, &default_steps()).unwrap();
    }
}

#[test]
fn the_last_echo_is_read_in_the_mode_given() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rails/entrypoint.prod.sh");
    for mode in [Mode::First, Mode::Later] {
        let end = super::last_echo_file(&repo, mode, &default_steps()).unwrap();
        assert_eq!(end.as_deref(), Some("exec pumactl start"), "{mode}");
    }
    let seeds_last = "echo \"migrate\"\nbundle exec rails db:migrate\necho \"bundle exec rails db:seed\"\nbundle exec rails db:seed\n";
    let later = edit::apply(seeds_last, Mode::Later, &["db:seed".to_string()]).unwrap();
    assert_eq!(super::last_echo(&later).as_deref(), Some("migrate"));
    assert_eq!(super::last_echo(seeds_last).as_deref(), Some("bundle exec rails db:seed"));
    assert_eq!(super::last_echo("echo 'done'\n# echo \"no\"\n").as_deref(), Some("done"));
    assert_eq!(super::last_echo("exec puma\n"), None);
}
