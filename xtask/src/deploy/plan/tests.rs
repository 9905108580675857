use std::path::{Path, PathBuf};

use super::*;
use crate::deploy::target::{DeployFile, DeployFlags, TargetFlags};

fn target(sandbox: bool) -> Target {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let file = DeployFile::load(root).unwrap();
    let overlay = sandbox.then(|| crate::sandbox::overlay(5010, 5011));
    file.resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, overlay.as_ref())
        .unwrap()
}

fn opts() -> PlanOptions {
    PlanOptions::new(PathBuf::from("target/xtask"))
}

/// Compares with `xtask/test_data/plan/<name>.txt`; `XTASK_BLESS=1` rewrites the file.
/// Compares with `xtask/test_data/plan/<name>.txt`; `XTASK_BLESS=1` rewrites the file.
pub(crate) fn golden(name: &str, plan: &Plan) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/plan").join(format!("{name}.txt"));
    let text = plan.lines().join("\n") + "\n";
    if std::env::var_os("XTASK_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(text, expected, "{} differs (XTASK_BLESS=1 rewrites it)", path.display());
}

#[test]
fn a_later_deploy_to_the_sandbox_is_this_plan() {
    golden("deploy-sandbox", &Plan::new(&target(true), Mode::Later, &opts()));
}

#[test]
fn a_first_deploy_to_aws_is_this_plan() {
    golden("first-deploy-production", &Plan::new(&target(false), Mode::First, &opts()));
}

#[test]
fn the_tests_run_beside_the_builds_and_the_pushes_beside_each_other() {
    let plan = Plan::new(&target(true), Mode::Later, &opts());
    let group = |name: &str| -> Vec<String> {
        plan.views()
            .into_iter()
            .filter(|v| v.side_by_side.as_deref() == Some(name))
            .map(|v| v.text)
            .collect()
    };
    let build = group("build");
    assert_eq!(build.len(), 3, "{build:?}");
    assert!(build[0].starts_with("tests: bundle exec rspec"), "{build:?}");
    assert!(build[1].starts_with("build [nginx]: docker build --no-cache"), "{build:?}");
    assert!(build[2].starts_with("build [rails]: docker build --no-cache"), "{build:?}");
    let push = group("push");
    assert_eq!(push.len(), 2);
    let views = plan.views();
    let index = |prefix: &str| views.iter().position(|v| v.text.starts_with(prefix)).unwrap();
    assert!(index("tests:") < index("push [nginx]"), "the pushes wait for the tests");
    assert!(index("push [rails]") < index("roll:"));
}

#[test]
fn without_tests_the_builds_are_their_own_phase() {
    let plan = Plan::new(&target(true), Mode::Later, &PlanOptions { skip_tests: true, ..opts() });
    assert!(!plan.steps.iter().any(|s| s.action == Action::Tests));
    assert!(plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Build { .. }))
        .all(|s| s.phase == Phase::Build));
}

#[test]
fn every_build_boots_its_image_once_before_any_push_unless_skipped() {
    let smoke = |opts: &PlanOptions| -> Vec<(String, usize)> {
        Plan::new(&target(true), Mode::First, opts)
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Build { image, smoke, .. } => Some((image.container.clone(), smoke.len())),
                _ => None,
            })
            .collect()
    };
    // Both builds, and first-deploy's rebuild of the later-mode rails image.
    assert_eq!(
        smoke(&opts()),
        [("nginx".to_string(), 1), ("rails".to_string(), 2), ("rails".to_string(), 2)]
    );
    let skipped = smoke(&PlanOptions { skip_smoke: true, ..opts() });
    assert!(skipped.iter().all(|(_, runs)| *runs == 0), "{skipped:?}");
    let plan = Plan::new(&target(true), Mode::Later, &opts());
    let build = plan.lines().into_iter().find(|l| l.contains("build [rails]")).unwrap();
    assert!(build.contains("smoke boot (before any push; a failure exits 5): docker run --rm --network none --entrypoint bash"), "{build}");
    assert!(build.contains("'{image_id.rails}' exec rails runner"), "{build}");
}

#[test]
fn a_first_deploy_puts_the_entrypoint_back_even_after_a_failure_then_ships_the_later_mode_image() {
    let plan = Plan::new(&target(true), Mode::First, &opts());
    let views = plan.views();
    let back = views.iter().position(|v| v.always).unwrap();
    assert!(views[back].text.starts_with("entrypoint: set rails/entrypoint.prod.sh to later mode"));
    assert_eq!(views.iter().filter(|v| v.always).count(), 1);
    let rolls: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.text.starts_with("roll:"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(rolls.len(), 2, "the first-mode image, then the later-mode one");
    assert!(back < rolls[0]);
    let rebuilt: Vec<&str> = views[rolls[0]..]
        .iter()
        .filter(|v| v.text.starts_with("build ["))
        .map(|v| v.text.as_str())
        .collect();
    assert_eq!(rebuilt.len(), 1, "only the image holding the entrypoint: {rebuilt:?}");
    assert!(
        rebuilt[0].starts_with("build [rails]: docker build --cache-from '{image_id.rails}'")
            || rebuilt[0].starts_with("build [rails]: docker build --cache-from {image_id.rails}"),
        "{}",
        rebuilt[0]
    );
}

#[test]
fn a_first_deploy_refuses_a_running_service_unless_forced() {
    let check = |force: bool| {
        let plan = Plan::new(&target(true), Mode::First, &PlanOptions { force, ..opts() });
        plan.steps.into_iter().find_map(|s| match s.action {
            Action::CheckService { refuse_running, warn_running, .. } => {
                Some((refuse_running, warn_running))
            }
            _ => None,
        })
    };
    assert_eq!(check(false), Some((true, false)));
    assert_eq!(check(true), Some((false, true)));
    let later = Plan::new(&target(true), Mode::Later, &opts());
    assert!(later.steps.iter().any(|s| matches!(
        s.action,
        Action::CheckService { refuse_running: false, warn_running: false, .. }
    )));
}

#[test]
fn outside_git_the_images_get_no_commit_tag() {
    let plan = Plan::new(&target(true), Mode::Later, &PlanOptions { git: false, ..opts() });
    assert!(!plan.lines().join("\n").contains(GIT_TAG));
    let plan = Plan::new(&target(true), Mode::Later, &opts());
    assert!(plan.lines().join("\n").contains(GIT_TAG));
}
