//! Faults during a run of the real executor: a fake `docker` (a shell script) in place of the
//! CLI, a scratch copy of the tree, and AWS on a scripted local server that records every
//! request, so that a step the run must not reach shows as a request it got.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xshell::Shell;

use super::{execute, failure_of};
use crate::aws::retry::scripted::{Reply, Server};
use crate::deploy::plan::{Action, Phase, Plan, PlanOptions};
use crate::deploy::target::{DeployFile, DeployFlags, Target, TargetFlags};
use crate::docker::Docker;
use crate::entrypoint::{self, Mode};
use crate::event::{Event, StepView};
use crate::failure::Failure;
use crate::interrupt;
use crate::report::Reporter;

/// GetAuthorizationToken's answer: `AWS:s3cret-from-ecr`, for the sandbox's registry.
const TOKEN: &str = r#"{"authorizationData":[{"authorizationToken":"QVdTOnMzY3JldC1mcm9tLWVjcg==","expiresAt":4102444800,"proxyEndpoint":"http://127.0.0.1:5011"}]}"#;
const PASSWORD: &str = "s3cret-from-ecr";

/// The docker CLI as far as a deploy uses it. A file `build.<context>` or `push.<repository>`
/// next to it is sourced first, to make that build or push misbehave.
const FAKE_DOCKER: &str = r#"#!/bin/sh
d="$(dirname "$0")"
ref_file() { echo "$d/ref.$(printf %s "$1" | tr '/:' '__')"; }
case "$1" in
version) echo 27.5.1 ;;
login)
  read -r password
  mkdir -p "$DOCKER_CONFIG"
  printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$5" "$(printf 'AWS:%s' "$password" | base64)" > "$DOCKER_CONFIG/config.json"
  echo "$DOCKER_CONFIG" > "$d/login-config"
  echo "Login Succeeded" ;;
build)
  for a; do last="$a"; done
  label="$(basename "$last")"
  while [ "$1" != --iidfile ]; do shift; done
  iid="$2"
  if [ -f "$d/build.$label" ]; then . "$d/build.$label"; fi
  echo "Step 1/2 : FROM zenn-sandbox/$label"
  echo "Step 2/2 : COPY . ."
  case "$label" in rails) n=1 ;; *) n=2 ;; esac
  printf 'sha256:%064d\n' "$n" > "$iid"
  echo "Successfully built" ;;
tag) echo "$2" > "$(ref_file "$3")" ;;
image) cat "$(ref_file "$5")" ;;
push)
  repository="${2%:*}"
  if [ -f "$d/push.$(basename "$repository")" ]; then . "$d/push.$(basename "$repository")"; fi
  echo "The push refers to repository [$repository]"
  echo "5f70bf18a086: Pushed"
  echo "${2##*:}: digest: sha256:$(printf '%064d' 7) size: 528"
  echo "$2" >> "$d/pushed" ;;
*) echo "fake docker: unexpected: $*" >&2; exit 2 ;;
esac
"#;

/// A scratch tree (the Dockerfiles, the entrypoint), a fake docker and a scripted AWS.
struct Scratch {
    dir: PathBuf,
    bin: PathBuf,
    server: Server,
    target: Target,
    opts: PlanOptions,
}

impl Scratch {
    /// `misbehave`: (file next to the fake docker, its script).
    fn new(name: &str, misbehave: &[(&str, &str)]) -> Scratch {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::project::target_dir().join("xtask-unit").join(format!("faults-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join("docker");
        std::fs::write(&program, FAKE_DOCKER).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (file, script) in misbehave {
            std::fs::write(bin.join(file), script).unwrap();
        }

        let server = Server::start(vec![Reply::Answer(200, TOKEN)]);
        let root = crate::project::root();
        let overlay = crate::sandbox::overlay(server.port(), 5011);
        let mut target = DeployFile::load(&root)
            .unwrap()
            .resolve(&TargetFlags::default(), &DeployFlags::default(), &|_| None, Some(&overlay))
            .unwrap();
        let tree = dir.join("tree");
        for image in &mut target.images {
            image.context = tree.join(&image.context);
            image.dockerfile = tree.join(&image.dockerfile);
            std::fs::create_dir_all(&image.context).unwrap();
            std::fs::write(&image.dockerfile, "FROM scratch\n").unwrap();
        }
        let file = tree.join(&target.entrypoint.file);
        std::fs::copy(root.join(&target.entrypoint.file), &file).unwrap();
        target.entrypoint.file = file;
        let opts = PlanOptions {
            skip_tests: true,
            skip_smoke: true,
            git: false,
            docker: Docker::with_program(program),
            settle_timeout: Duration::from_secs(1),
            ..PlanOptions::new(dir.join("work"))
        };
        let scratch = Scratch { dir, bin, server, target, opts };
        scratch.assert_later_mode("the scratch copy starts");
        scratch
    }

    /// The plan of `mode`, without the preflight and creation calls that need a real AWS
    /// account behind them (the scripted server answers only the login's token).
    fn plan(&self, mode: Mode) -> Plan {
        let mut plan = Plan::new(&self.target, mode, &self.opts);
        plan.steps.retain(|s| {
            !matches!(
                s.action,
                Action::CheckRepositories { .. }
                    | Action::CheckCluster { .. }
                    | Action::CheckService { .. }
                    | Action::CheckDeployments { .. }
                    | Action::CreateRepositories { .. }
                    | Action::CreateCluster { .. }
                    | Action::CreateLogGroups { .. }
            )
        });
        plan
    }

    fn execute(&self, plan: &Plan, report: &Reporter) -> anyhow::Result<super::Finished> {
        let sh = Shell::new().unwrap();
        sh.change_dir(self.dir.join("tree"));
        execute(&sh, report, &self.target, plan, &self.opts)
    }

    /// The AWS operations the run called, in order.
    fn aws_calls(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter_map(|r| {
                r.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("x-amz-target").then(|| value.trim().to_string())
                })
            })
            .collect()
    }

    /// The references whose `docker push` completed.
    fn pushed(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin.join("pushed"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn assert_later_mode(&self, when: &str) {
        let file = &self.target.entrypoint.file;
        let steps = &self.target.entrypoint.first_deploy_only;
        if let Err(e) = entrypoint::check_file(file, Mode::Later, steps) {
            panic!("{when}: the entrypoint is not in later mode: {e:#}");
        }
    }

    /// No temporary Docker config (it holds the registry password) is left in the work dir,
    /// and the one the login used, if any, is gone.
    fn assert_no_docker_config(&self) {
        let work = self.dir.join("work");
        let left: Vec<String> = std::fs::read_dir(&work)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("docker-config."))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "docker configs left in {}: {left:?}", work.display());
        if let Ok(used) = std::fs::read_to_string(self.bin.join("login-config")) {
            assert!(!Path::new(used.trim()).exists(), "the login's config {used} is left");
        }
    }
}

fn error_text(result: anyhow::Result<super::Finished>) -> (Option<Failure>, String) {
    match result {
        Ok(_) => panic!("the run should fail"),
        Err(err) => (Failure::of(&err), format!("{err:#}")),
    }
}

const GET_TOKEN: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

#[test]
fn the_registry_dying_mid_push_is_a_push_failure_that_moves_no_latest_and_rolls_nothing() {
    let refused = r#"echo "The push refers to repository [$repository]"
echo "5f70bf18a086: Preparing"
echo "e2d1b5a6c3f4: Preparing"
echo "5f70bf18a086: Pushing  1.18MB/10.4MB"
echo "Put \"http://127.0.0.1:5011/v2/zenn-clone-rails/blobs/uploads/4f1c0e8a?_state=x\": dial tcp 127.0.0.1:5011: connect: connection refused" >&2
exit 1
"#;
    let broken = r#"echo "The push refers to repository [$repository]"
echo "9c1b6dd6c1e6: Preparing"
echo "9c1b6dd6c1e6: Pushing  2.5MB/48MB"
echo 'error parsing HTTP 404 response body: unexpected end of JSON input: ""' >&2
exit 1
"#;
    let scratch = Scratch::new(
        "registry-dies",
        &[("push.zenn-clone-rails", refused), ("push.zenn-clone-nginx", broken)],
    );
    let plan = scratch.plan(Mode::Later);
    assert!(plan.steps.iter().any(|s| matches!(s.action, Action::Roll { .. })));
    let (class, text) = error_text(scratch.execute(&plan, &Reporter::plain()));
    eprintln!("{text}");
    assert_eq!(class, Some(Failure::Push), "{text}");
    assert_eq!(Failure::Push.exit_code(), 6);
    assert!(text.starts_with("push failed: image `"), "{text}");
    assert!(
        text.contains("dial tcp 127.0.0.1:5011: connect: connection refused")
            || text.contains("error parsing HTTP 404 response body"),
        "docker's own words: {text}"
    );
    assert!(text.contains("check that the registry answers and deploy again"), "{text}");
    assert!(!text.contains("finished its push"), "no push completed: {text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(scratch.pushed(), Vec::<String>::new(), "no `docker push` completed");
    // Only the login reached AWS: no DescribeImages, no RegisterTaskDefinition, no UpdateService.
    assert_eq!(scratch.aws_calls(), [GET_TOKEN]);
    scratch.assert_no_docker_config();
}

#[test]
fn the_docker_daemon_vanishing_mid_build_is_a_build_failure_that_says_to_start_it() {
    let gone = r#"echo "Step 1/9 : ARG RUBY_IMAGE=ruby:3.1.2"
echo "Step 2/9 : FROM \$RUBY_IMAGE"
echo " ---> 4d2f1c0e9b8a"
echo "Step 3/9 : RUN bundle install"
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
exit 1
"#;
    // The other build is still at work when the daemon goes: it must be stopped, not waited for.
    let slow = "echo \"Step 1/2 : FROM zenn-sandbox/nginx\"\nexec sleep 30\n";
    let scratch = Scratch::new("daemon-vanishes", &[("build.rails", gone), ("build.nginx", slow)]);
    let plan = scratch.plan(Mode::First);
    let started = Instant::now();
    let (class, text) = error_text(scratch.execute(&plan, &Reporter::plain()));
    eprintln!("{text}");
    assert!(started.elapsed() < Duration::from_secs(20), "the nginx build was waited for");
    assert_eq!(class, Some(Failure::Build), "{text}");
    assert_eq!(Failure::Build.exit_code(), 5);
    assert!(text.contains("Cannot connect to the Docker daemon at unix:///var/run/docker.sock"));
    assert!(text.contains("`nginx` stopped: build cancelled"), "{text}");
    assert!(
        text.ends_with(
            "nothing was pushed; the Docker daemon stopped answering: start it (`sudo systemctl \
             start docker`, or Docker Desktop) and deploy again"
        ),
        "{text}"
    );
    assert_eq!(scratch.pushed(), Vec::<String>::new());
    assert_eq!(scratch.aws_calls(), [GET_TOKEN]);
    // first-deploy put the entrypoint in first mode; the step "also after a failure" put it back.
    scratch.assert_later_mode("after the failed build");
    scratch.assert_no_docker_config();
}

/// The steps a run interrupted while `views[at]` runs must start: every one up to the end of
/// that step's side-by-side group, then only those marked "also after a failure".
fn expected_after_interrupt(plan: &Plan, at: usize) -> (Vec<StepView>, usize) {
    let views = plan.views();
    let group = plan.steps[at].side_by_side;
    let end = match group {
        Some(_) => at + plan.steps[at..].iter().take_while(|s| s.side_by_side == group).count(),
        None => at + 1,
    };
    let mut expected = views[..end].to_vec();
    expected.extend(views[end..].iter().filter(|v| v.always).cloned());
    (expected, end)
}

#[test]
fn ctrl_c_in_each_phase_puts_the_entrypoint_back_and_leaves_no_docker_config() {
    let phases = [Phase::Preflight, Phase::Entrypoint, Phase::Login, Phase::Build, Phase::Push];
    for phase in phases {
        let name = phase.name().replace(' ', "-");
        let scratch = Scratch::new(&format!("ctrl-c-{name}"), &[]);
        let plan = scratch.plan(Mode::First);
        let at = plan.steps.iter().position(|s| s.phase == phase).expect("the phase is planned");
        let (expected, end) = expected_after_interrupt(&plan, at);

        // Ctrl-C arrives while the phase's first step runs: that step ends, and the run stops.
        let started = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&started);
        let report = Reporter::plain_with_hook(move |event| {
            if let Event::StepStart(view) = event {
                if view.index == at {
                    interrupt::raise_on_this_thread(true);
                }
                seen.lock().unwrap().push(view.clone());
            }
        });
        let result = scratch.execute(&plan, &report);
        interrupt::raise_on_this_thread(false);
        let (class, text) = error_text(result);

        let what = format!("Ctrl-C in phase {}", phase.name());
        assert!(text.ends_with("interrupted (Ctrl-C)"), "{what}: {text}");
        assert_eq!(class, Some(failure_of(plan.steps[end].phase)), "{what}: {text}");
        let started = started.lock().unwrap().clone();
        let texts = |views: &[StepView]| views.iter().map(|v| v.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&started), texts(&expected), "{what}: the steps run");
        scratch.assert_later_mode(&what);
        scratch.assert_no_docker_config();
        let logged_in = std::fs::read_to_string(scratch.bin.join("login-config")).is_ok();
        let after_login = matches!(phase, Phase::Login | Phase::Build | Phase::Push);
        assert_eq!(logged_in, after_login, "{what}: the login ran");
        let calls = scratch.aws_calls();
        assert_eq!(calls.len(), usize::from(logged_in), "{what}: AWS calls {calls:?}");
        assert_eq!(scratch.pushed().is_empty(), phase != Phase::Push, "{what}: pushes");
    }
}
