//! Build and push against real services: Docker, a CNCF registry (`docker-registry`) and moto
//! as the ECR API, each started by the test on free ports of 127.0.0.1.
//!
//! moto's ECR has no registry, so the test mirrors what reaches the registry into moto
//! (`PutImage` with the registry's manifest and digest), as the sandbox will. The library
//! never does this. moto runs from the sandbox's venv (made when missing), or from the python
//! `XTASK_TEST_PYTHON` names. Run: `cargo test -p xtask -- --ignored --nocapture live_` (and
//! `bench_`).

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;
use crate::aws::ecr::{self, TaggedImage};
use crate::deploy::plan::{Action, Phase, Plan, PlanOptions};
use crate::deploy::run;
use crate::deploy::target::{DeployFile, DeployFlags, Overlay, Target, TargetFlags};
use crate::docker::DockerConfigDir;
use crate::entrypoint::Mode;

/// The deploy's options without the tests: these check the build and the push.
fn opts() -> PlanOptions {
    PlanOptions { skip_tests: true, ..PlanOptions::new(crate::project::target_dir().join("xtask")) }
}

/// Live tests share the Docker engine's images: they run one at a time, and each removes
/// every image the test Dockerfiles made (label `xtask-test=push`) when it ends.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A registry and a moto server on free ports, stopped on drop.
struct Services {
    _turn: MutexGuard<'static, ()>,
    dir: PathBuf,
    registry: Child,
    registry_addr: String,
    moto: Child,
    moto_url: String,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Polls `url` until it answers with `status`, for at most `limit`.
fn wait_for_http(url: &str, status: u16, limit: Duration) {
    let agent = agent();
    let started = Instant::now();
    while agent.get(url).call().map(|r| r.status().as_u16()).ok() != Some(status) {
        assert!(started.elapsed() < limit, "{url} did not answer {status} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Services {
    fn start(name: &str) -> Services {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = crate::project::target_dir().join("xtask-live").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = |file: &str| std::fs::File::create(dir.join(file)).unwrap();

        let registry_addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {registry_addr}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log("registry.log"))
            .stderr(log("registry.log"))
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");

        let moto_port = free_port().to_string();
        let python =
            std::env::var_os("XTASK_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
                crate::sandbox::moto_python(&Reporter::plain()).expect("the sandbox's moto venv")
            });
        let moto = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &moto_port])
            .stdout(log("moto.log"))
            .stderr(log("moto.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("the sandbox's venv python, or XTASK_TEST_PYTHON, with moto[server]");
        let moto_url = format!("http://127.0.0.1:{moto_port}");

        let services = Services { _turn: turn, dir, registry, registry_addr, moto, moto_url };
        wait_for_http(
            &format!("http://{}/v2/", services.registry_addr),
            200,
            Duration::from_secs(20),
        );
        wait_for_http(&format!("{}/moto-api/", services.moto_url), 200, Duration::from_secs(60));
        services
    }

    fn overlay(&self) -> Overlay {
        let port = |addr: &str| addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
        crate::sandbox::overlay(port(&self.moto_url), port(&self.registry_addr))
    }

    /// The repositories the registry holds.
    fn catalog(&self) -> Vec<String> {
        let url = format!("http://{}/v2/_catalog", self.registry_addr);
        let body = agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        serde_json::from_value(json["repositories"].clone()).unwrap_or_default()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for child in [&mut self.registry, &mut self.moto] {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_test_images();
        // The logs stay for a look after a failure; the image bytes go.
        for bulky in ["registry-data", "contexts"] {
            let _ = std::fs::remove_dir_all(self.dir.join(bulky));
        }
    }
}

fn remove_test_images() {
    // A build stopped mid-way (another image's build failed) can leave the intermediate
    // container of its current step behind, carrying the test Dockerfiles' label.
    if let Ok(out) = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter", "label=xtask-test=push"])
        .output()
    {
        let ids: Vec<String> =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
        if !ids.is_empty() {
            let _ =
                Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).status();
        }
    }
    let Ok(out) =
        Command::new("docker").args(["images", "-q", "--filter", "label=xtask-test=push"]).output()
    else {
        return;
    };
    let mut ids: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let _ =
            Command::new("docker").args(["rmi", "-f"]).args(&ids).stdout(Stdio::null()).status();
    }
}

/// Copies what reaches the registry into moto's ECR, as the sandbox's mirror will.
struct Mirror {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    fn start(services: &Services, aws: &Aws, repositories: Vec<String>) -> Mirror {
        let stop = Arc::new(AtomicBool::new(false));
        let (registry, ecr, flag) = (services.registry_addr.clone(), aws.ecr.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = crate::aws::runtime().unwrap();
            let agent = agent();
            let mut seen = HashSet::new();
            while !flag.load(Ordering::SeqCst) {
                for repo in &repositories {
                    for (tag, digest, manifest, media_type) in manifests(&agent, &registry, repo) {
                        if seen.contains(&(repo.clone(), tag.clone(), digest.clone())) {
                            continue;
                        }
                        let put = ecr
                            .put_image()
                            .repository_name(repo)
                            .image_tag(&tag)
                            .image_digest(&digest)
                            .image_manifest(manifest)
                            .image_manifest_media_type(media_type);
                        let result = rt.block_on(put.send());
                        let exists = result
                            .as_ref()
                            .err()
                            .and_then(|e| e.as_service_error())
                            .is_some_and(|e| e.is_image_already_exists_exception());
                        if result.is_ok() || exists {
                            seen.insert((repo.clone(), tag, digest));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Mirror { stop, thread: Some(thread) }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// (tag, digest, manifest, media type) of every tag of `repo` in the registry.
fn manifests(
    agent: &ureq::Agent,
    registry: &str,
    repo: &str,
) -> Vec<(String, String, String, String)> {
    let url = format!("http://{registry}/v2/{repo}/tags/list");
    let Ok(mut resp) = agent.get(&url).call() else { return Vec::new() };
    if resp.status() != 200 {
        return Vec::new();
    }
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let tags: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::from_value(v["tags"].clone()).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    for tag in tags {
        let url = format!("http://{registry}/v2/{repo}/manifests/{tag}");
        let Ok(mut resp) = agent
            .get(&url)
            .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
            .call()
        else {
            continue;
        };
        let header = |name: &str| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
        };
        let (digest, media_type) = (header("Docker-Content-Digest"), header("Content-Type"));
        if resp.status() == 200 && !digest.is_empty() {
            out.push((
                tag,
                digest,
                resp.body_mut().read_to_string().unwrap_or_default(),
                media_type,
            ));
        }
    }
    out
}

/// The sandbox target pointed at the services, building the test Dockerfiles (or `rails_dir`).
fn target(services: &Services, rails_dir: &str, nginx_dir: &str) -> Target {
    let file = format!(
        "[targets.sandbox.images.rails]\nrepository = \"zenn-clone-rails\"\ndockerfile = \"{rails_dir}/Dockerfile\"\ncontext = \"{rails_dir}\"\n\
         [targets.sandbox.images.nginx]\nrepository = \"zenn-clone-nginx\"\ndockerfile = \"{nginx_dir}/Dockerfile\"\ncontext = \"{nginx_dir}\"\n"
    );
    DeployFile::parse(&file)
        .unwrap()
        .resolve(
            &TargetFlags::default(),
            &DeployFlags::default(),
            &|_| None,
            Some(&services.overlay()),
        )
        .unwrap()
}

const RAILS: &str = "xtask/test_data/push/rails";
const NGINX: &str = "xtask/test_data/push/nginx";

struct Run {
    sh: Shell,
    report: Reporter,
    rt: Runtime,
    aws: Aws,
}

impl Run {
    fn new(target: &Target) -> Run {
        let sh = Shell::new().unwrap();
        sh.change_dir(crate::project::root());
        let rt = crate::aws::runtime().unwrap();
        let aws = rt.block_on(Aws::connect(target));
        Run { sh, report: Reporter::plain(), rt, aws }
    }

    /// The build-and-push steps of the deploy's plan (no ECS service here), run.
    fn deploy(&self, target: &Target, mode: Mode, opts: PlanOptions) -> Result<Vec<PushedImage>> {
        let mut plan = Plan::new(target, mode, &opts);
        let roll =
            plan.steps.iter().position(|s| s.phase == Phase::Roll).unwrap_or(plan.steps.len());
        plan.steps.truncate(roll);
        plan.steps.retain(|s| {
            matches!(
                s.action,
                Action::CheckBuildFiles { .. }
                    | Action::CheckDocker { .. }
                    | Action::CheckCredentials { .. }
                    | Action::CheckRepositories { .. }
                    | Action::CreateRepositories { .. }
                    | Action::Login { .. }
                    | Action::Tests
                    | Action::Build { .. }
                    | Action::Push { .. }
                    | Action::CheckLatest { .. }
            )
        });
        let mut pushed = run::execute(&self.sh, &self.report, target, &plan, &opts)?.pushed;
        pushed.sort_by(|a, b| b.container.cmp(&a.container));
        Ok(pushed)
    }

    fn latest(&self, repository: &str) -> Option<TaggedImage> {
        self.rt.block_on(ecr::tagged_image(&self.aws.ecr, repository, LATEST)).unwrap()
    }
}

fn show(label: &str, images: &[PushedImage]) {
    for i in images {
        eprintln!(
            "{label}: {} {} tags={:?} digest={} pushed_at={}",
            i.container,
            i.uri,
            i.tags,
            i.digest,
            timestamp(i.pushed_at)
        );
    }
}

fn show_error(label: &str, err: &anyhow::Error) {
    eprintln!(
        "{label}: exit code {} ({:?})\nerror: {err:#}",
        Failure::exit_code_of(err),
        Failure::of(err)
    );
}

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_build_push_and_check_twice_gives_new_digests() {
    let services = Services::start("twice");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    let _mirror = Mirror::start(
        &services,
        &run.aws,
        vec!["zenn-clone-rails".into(), "zenn-clone-nginx".into()],
    );

    let first = run.deploy(&target, Mode::First, opts()).unwrap();
    show("first", &first);
    let second = run.deploy(&target, Mode::Later, opts()).unwrap();
    show("second", &second);

    assert_eq!(first.len(), 2);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.container, b.container);
        assert_ne!(a.digest, b.digest, "--no-cache gives {} a new digest", a.container);
        assert!(b.pushed_at >= a.pushed_at);
        let latest = run.latest(&b.repository).unwrap();
        assert_eq!(latest.digest, b.digest, "ECR latest of {}", b.repository);
        assert_eq!(b.uri, format!("{}/{}", services.registry_addr, b.repository));
        assert!(
            b.tags[0] == "latest" && b.tags.get(1).is_some_and(|t| t.starts_with("git-")),
            "{:?}",
            b.tags
        );
    }
}

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_deploy_without_repositories_stops_before_building() {
    let services = Services::start("no-repositories");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    let err = run.deploy(&target, Mode::Later, opts()).unwrap_err();
    show_error("deploy without repositories", &err);
    assert_eq!(Failure::of(&err), Some(Failure::Preflight));
    assert!(format!("{err:#}").contains("run `cargo xtask first-deploy`"), "{err:#}");
    assert!(services.catalog().is_empty(), "nothing pushed");
}

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_broken_dockerfile_fails_the_build_and_pushes_nothing() {
    let services = Services::start("broken");
    let target = target(&services, "xtask/test_data/push/broken", NGINX);
    let run = Run::new(&target);
    let err = run.deploy(&target, Mode::First, opts()).unwrap_err();
    show_error("broken Dockerfile", &err);
    assert_eq!(Failure::exit_code_of(&err), Failure::Build.exit_code());
    let msg = format!("{err:#}");
    assert!(msg.starts_with("build failed: image `rails`: `docker build --no-cache"), "{msg}");
    assert!(msg.contains("Gemfile.lock"), "the log's tail shows the cause: {msg}");
    assert!(services.catalog().is_empty(), "nothing pushed: {:?}", services.catalog());
    assert_eq!(run.latest("zenn-clone-rails"), None);
}

/// The real `docker login`, started as the pipeline starts it, behind a wrapper that records
/// the process's own `/proc/<pid>/cmdline` and `environ` and then `exec`s docker in place.
#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_login_password_reaches_docker_on_stdin_only() {
    use std::os::unix::fs::PermissionsExt;
    let services = Services::start("login-argv");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    let program = services.dir.join("docker");
    let record = format!(
        "#!/bin/bash\ntr '\\0' '\\n' < /proc/$$/cmdline > {dir}/cmdline\ntr '\\0' '\\n' < /proc/$$/environ > {dir}/environ\nexec docker \"$@\"\n",
        dir = services.dir.display()
    );
    std::fs::write(&program, record).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();

    let auth = run.rt.block_on(ecr::authorization(&run.aws.ecr)).unwrap();
    let password = auth.password.expose().to_string();
    let config = DockerConfigDir::create(&services.dir).unwrap();
    let login = Docker::with_program(&program).login(
        &services.registry_addr,
        &auth.username,
        auth.password,
        config.path(),
    );
    eprintln!("$ {login}");
    eprintln!("{}", login.run_captured(&run.sh).unwrap());

    let cmdline = std::fs::read_to_string(services.dir.join("cmdline")).unwrap();
    eprintln!("/proc/<pid>/cmdline of docker login:\n{cmdline}");
    assert!(cmdline.contains("--password-stdin"), "{cmdline}");
    assert!(!cmdline.contains(&password), "password in argv");
    let environ = std::fs::read_to_string(services.dir.join("environ")).unwrap();
    // The copy holds the test's whole environment: it does not stay on disk.
    std::fs::remove_file(services.dir.join("environ")).unwrap();
    assert!(!environ.contains(&password), "password in the environment");
    // Docker stored what it read on stdin: the password arrived, by stdin alone.
    let stored = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    let expected = aws_smithy_types::base64::encode(format!("AWS:{password}"));
    assert!(stored.contains(&expected), "{stored}");
}

const STALE_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_latest_that_does_not_move_is_a_push_failure_showing_both_digests() {
    let services = Services::start("latest-stale");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    // No mirror: ECR keeps showing an older `latest`, as if the push had gone elsewhere.
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222"},"layers":[]}"#;
    for repo in ["zenn-clone-rails", "zenn-clone-nginx"] {
        run.rt.block_on(ecr::create_repository(&run.aws.ecr, repo)).unwrap();
        let put = run.aws.ecr.put_image().repository_name(repo).image_tag(LATEST);
        run.rt.block_on(put.image_digest(STALE_DIGEST).image_manifest(manifest).send()).unwrap();
    }
    let opts = PlanOptions { settle_timeout: Duration::from_secs(2), ..opts() };
    let err = run.deploy(&target, Mode::Later, opts).unwrap_err();
    show_error("latest does not move", &err);
    assert_eq!(Failure::of(&err), Some(Failure::Push));
    let msg = format!("{err:#}");
    let pushed = docker::repo_digest(
        &Docker::default()
            .repo_digests(&format!("{}/zenn-clone-rails:latest", services.registry_addr))
            .read(&run.sh)
            .unwrap(),
        &format!("{}/zenn-clone-rails", services.registry_addr),
    )
    .unwrap();
    assert!(msg.contains(STALE_DIGEST) && msg.contains(&pushed), "both digests: {msg}");
}

/// A `docker` that kills the registry as soon as the first push has started.
fn docker_killing_registry(dir: &Path, registry_pid: u32) -> Docker {
    use std::os::unix::fs::PermissionsExt;
    let program = dir.join("docker");
    std::fs::write(
        &program,
        format!(
            r#"#!/bin/bash
if [[ $1 == push ]]; then
    # `exec` keeps the pid the xtask started, so stopping this job stops docker itself.
    exec docker "$@" > >(IFS= read -r first; printf '%s\n' "$first"; kill {registry_pid} 2>/dev/null; exec cat) 2>&1
fi
exec docker "$@"
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    Docker::with_program(program)
}

#[test]
#[ignore = "needs Docker, docker-registry and moto (the sandbox's venv): run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_registry_stopped_during_push_fails_the_push() {
    let services = Services::start("registry-stopped");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    let _mirror = Mirror::start(
        &services,
        &run.aws,
        vec!["zenn-clone-rails".into(), "zenn-clone-nginx".into()],
    );
    let docker = docker_killing_registry(&services.dir, services.registry.id());
    let started = Instant::now();
    let err = run.deploy(&target, Mode::First, PlanOptions { docker, ..opts() }).unwrap_err();
    show_error("registry stopped during push", &err);
    eprintln!("failed after {:?}", started.elapsed());
    assert_eq!(Failure::exit_code_of(&err), Failure::Push.exit_code());
    let msg = format!("{err:#}");
    assert!(msg.starts_with("push failed: image `"), "{msg}");
    let cause = format!("Get \"http://{}/v2/\"", services.registry_addr);
    assert!(msg.contains(&cause), "the cause is shown: {msg}");
    assert_eq!(run.latest("zenn-clone-rails"), None, "nothing reached ECR");
}

#[test]
#[ignore = "needs docker-registry and moto (the sandbox's venv), Docker not: run by `cargo xtask ci` (cargo test -- --include-ignored)"]
fn live_missing_docker_daemon_is_a_preflight_failure() {
    let services = Services::start("no-daemon");
    let target = target(&services, RAILS, NGINX);
    let run = Run::new(&target);
    let _host = run.sh.push_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let err = run.deploy(&target, Mode::First, opts()).unwrap_err();
    show_error("no daemon", &err);
    assert_eq!(Failure::of(&err), Some(Failure::Preflight));
    assert!(format!("{err:#}").contains("start Docker"), "{err:#}");
}

/// Writes `mb` MiB of incompressible bytes, different for every `seed`, so that each run
/// builds and pushes a new layer as a real rebuild does.
fn write_payload(path: &Path, mb: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(mb << 20);
    while bytes.len() < mb << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The chapter's commands one after another (xtask/bench/chapter_push.sh) against the
/// xtask, alternately, twice each; prints the wall times.
#[test]
#[ignore = "a benchmark of minutes, needs Docker, docker-registry and moto (the sandbox's venv): run by hand (cargo test -- --ignored --nocapture bench_)"]
fn bench_chapter_script_against_xtask() {
    let mb: usize = std::env::var("XTASK_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let services = Services::start("bench");
    let contexts = services.dir.join("contexts");
    for (name, source) in [("rails", RAILS), ("nginx", NGINX)] {
        std::fs::create_dir_all(contexts.join(name)).unwrap();
        let root = crate::project::root();
        std::fs::copy(root.join(source).join("Dockerfile"), contexts.join(name).join("Dockerfile"))
            .unwrap();
    }
    let dir = |name: &str| contexts.join(name).display().to_string();
    let target = target(&services, &dir("rails"), &dir("nginx"));
    let run = Run::new(&target);
    for repo in ["zenn-clone-rails", "zenn-clone-nginx"] {
        run.rt.block_on(ecr::create_repository(&run.aws.ecr, repo)).unwrap();
    }
    let _mirror = Mirror::start(
        &services,
        &run.aws,
        vec!["zenn-clone-rails".into(), "zenn-clone-nginx".into()],
    );

    let mut seed = 0;
    let mut fresh_payload = || {
        for name in ["rails", "nginx"] {
            seed += 1;
            write_payload(&contexts.join(name).join("payload.bin"), mb, seed);
        }
    };
    let arg = |image: &Image| {
        image
            .build_args
            .iter()
            .map(|(k, v)| format!("--build-arg {k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let image = |container: &str| target.images.iter().find(|i| i.container == container).unwrap();
    let mut script_times = Vec::new();
    let mut xtask_times = Vec::new();
    let mut digests = Vec::new();
    for _ in 0..2 {
        fresh_payload();
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(crate::project::root().join("xtask/bench/chapter_push.sh"))
            .arg(&services.registry_addr)
            .current_dir(crate::project::root())
            .envs([
                ("AWS_ENDPOINT_URL", services.moto_url.as_str()),
                ("AWS_ACCESS_KEY_ID", "sandbox"),
                ("AWS_SECRET_ACCESS_KEY", "sandbox"),
                ("AWS_REGION", target.region.as_str()),
                ("RAILS_DOCKERFILE", &format!("{}/Dockerfile", dir("rails"))),
                ("RAILS_CONTEXT", &dir("rails")),
                ("RAILS_BUILD_ARGS", &arg(image("rails"))),
                ("NGINX_DOCKERFILE", &format!("{}/Dockerfile", dir("nginx"))),
                ("NGINX_CONTEXT", &dir("nginx")),
                ("NGINX_BUILD_ARGS", &arg(image("nginx"))),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "chapter_push.sh failed");
        script_times.push(started.elapsed());

        fresh_payload();
        let started = Instant::now();
        let pushed = run.deploy(&target, Mode::Later, opts()).unwrap();
        xtask_times.push(started.elapsed());
        digests.push(pushed.iter().map(|p| p.digest.clone()).collect::<Vec<_>>());
    }
    assert_ne!(digests[0], digests[1], "each run pushes new images");
    for (i, (script, xtask)) in script_times.iter().zip(&xtask_times).enumerate() {
        eprintln!(
            "bench run {}: payload {mb} MiB per image: chapter script {:.2}s, xtask {:.2}s, ratio {:.2}",
            i + 1,
            script.as_secs_f64(),
            xtask.as_secs_f64(),
            xtask.as_secs_f64() / script.as_secs_f64()
        );
    }
}
