use std::collections::BTreeMap;
use std::time::Duration;

use super::build::CONFIG_DIR_PREFIX;
use super::*;
use crate::failure::Failure;

const PASSWORD: &str = "eyJwYXlsb2FkIjoi-secret-password";

fn spec(cache: bool) -> BuildSpec {
    BuildSpec {
        iidfile: "target/xtask/rails.iid".into(),
        cache_from: None,
        dockerfile: "rails/Dockerfile.prod".into(),
        context: "rails".into(),
        build_args: BTreeMap::from([
            ("RUBY_IMAGE".into(), "zenn-sandbox/ruby:3.1".into()),
            ("GREETING".into(), "hello world".into()),
        ]),
        cache,
    }
}

#[test]
fn build_has_no_cache_by_default() {
    let cmd = Docker::default().build(&spec(false));
    assert_eq!(
        cmd.to_string(),
        "docker build --no-cache --iidfile target/xtask/rails.iid -f rails/Dockerfile.prod \
         --build-arg 'GREETING=hello world' --build-arg RUBY_IMAGE=zenn-sandbox/ruby:3.1 rails"
    );
    assert_eq!(cmd.config_dir(), None, "a build keeps the user's docker config");
    assert!(cmd.args().contains(&OsString::from("GREETING=hello world")), "one argument");
}

#[test]
fn build_with_cache_drops_the_flag() {
    let cmd = Docker::default().build(&spec(true));
    assert!(!cmd.to_string().contains("--no-cache"), "{cmd}");
    assert!(cmd.to_string().starts_with("docker build --iidfile "), "{cmd}");
}

#[test]
fn build_from_an_earlier_image_uses_its_layers_only() {
    let spec = BuildSpec { cache_from: Some("sha256:ab".into()), ..spec(false) };
    let cmd = Docker::default().build(&spec);
    assert!(cmd.to_string().starts_with("docker build --cache-from sha256:ab --iidfile "), "{cmd}");
    assert!(!cmd.to_string().contains("--no-cache"), "{cmd}");
}

#[test]
fn login_takes_the_password_on_stdin_only() {
    let config = Path::new("/repo/target/xtask/docker-config.42");
    let cmd = Docker::default().login(
        "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com",
        "AWS",
        Secret::new(PASSWORD),
        config,
    );
    assert_eq!(
        cmd.to_string(),
        "DOCKER_CONFIG=/repo/target/xtask/docker-config.42 docker login --username AWS \
         --password-stdin 123456789012.dkr.ecr.ap-northeast-1.amazonaws.com \
         < (password on stdin: ****)"
    );
    assert!(cmd.args().iter().all(|a| !a.to_string_lossy().contains(PASSWORD)));
    assert!(!format!("{cmd:?}").contains(PASSWORD), "Debug shows the password");
    assert_eq!(cmd.stdin().map(Secret::expose), Some(PASSWORD));
    assert_eq!(cmd.config_dir(), Some(config));
}

#[test]
fn no_command_but_login_reads_stdin() {
    let d = Docker::default();
    let config = Path::new("/c");
    for cmd in [d.version(), d.build(&spec(false)), d.push("r/x:latest", config)] {
        assert!(cmd.stdin().is_none(), "{cmd}");
    }
}

#[test]
fn push_and_inspect_and_version_read_as_expected() {
    let d = Docker::with_program("/usr/local/bin/docker");
    let config = Path::new("/t/docker-config.7");
    assert_eq!(
        d.push("127.0.0.1:5011/zenn-clone-nginx:latest", config).to_string(),
        "DOCKER_CONFIG=/t/docker-config.7 /usr/local/bin/docker push 127.0.0.1:5011/zenn-clone-nginx:latest"
    );
    assert_eq!(
        d.repo_digests("r/x:latest").to_string(),
        "/usr/local/bin/docker image inspect --format '{{json .RepoDigests}}' r/x:latest"
    );
    assert_eq!(
        d.version().to_string(),
        "/usr/local/bin/docker version --format '{{.Server.Version}}'"
    );
    assert_eq!(
        d.tag("sha256:ab", "r/x:latest").to_string(),
        "/usr/local/bin/docker tag sha256:ab r/x:latest"
    );
    assert_eq!(
        Step::same_image(&d, "r/x:latest", "sha256:ab").to_string(),
        "/usr/local/bin/docker image inspect --format '{{.Id}}' r/x:latest  # must print sha256:ab, or r/x:latest moved: stop"
    );
}

#[test]
fn redact_masks_the_secret_in_output() {
    let cmd = Docker::default().login("r", "AWS", Secret::new(PASSWORD), Path::new("/c"));
    assert_eq!(cmd.redact(&format!("bad password {PASSWORD}!")), "bad password ****!");
}

const PUSH_OUTPUT: &str = "\
The push refers to repository [127.0.0.1:5099/tt]
01daa313bb7b: Preparing
01daa313bb7b: Pushed
latest: digest: sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483 size: 524";

#[test]
fn pushed_digest_is_read_from_the_output() {
    let lines: Vec<String> = PUSH_OUTPUT.lines().map(String::from).collect();
    assert_eq!(
        pushed_digest(&lines, "latest").as_deref(),
        Some("sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483")
    );
    assert_eq!(pushed_digest(&lines, "git-0123abc"), None);
    assert_eq!(pushed_digest(&["latest: digest: sha256:abc size: 1".into()], "latest"), None);
}

#[test]
fn repo_digest_is_read_from_inspect() {
    let json = r#"["other/x@sha256:1111111111111111111111111111111111111111111111111111111111111111","127.0.0.1:5099/tt@sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483"]"#;
    assert_eq!(
        repo_digest(json, "127.0.0.1:5099/tt").as_deref(),
        Some("sha256:6582489d815961069f1feef6925112b0619ee690fdbf4d455730092259ea6483")
    );
    assert_eq!(repo_digest(json, "127.0.0.1:5099/t"), None);
    assert_eq!(repo_digest("[]", "127.0.0.1:5099/tt"), None);
    assert_eq!(repo_digest("null", "127.0.0.1:5099/tt"), None);
}

#[test]
fn quoting_follows_the_shell() {
    assert_eq!(quote("plain-arg_1.2:3/x=y@z".as_ref()), "plain-arg_1.2:3/x=y@z");
    assert_eq!(quote("".as_ref()), "''");
    assert_eq!(quote("it's".as_ref()), r"'it'\''s'");
}

#[test]
fn config_dir_is_private_and_removed() {
    let parent = crate::project::target_dir().join("xtask-unit").join("docker-config-test");
    let path = {
        let dir = DockerConfigDir::create(&parent).unwrap();
        let other = DockerConfigDir::create(&parent).unwrap();
        assert_ne!(dir.path(), other.path(), "two logins in one process do not share a directory");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        dir.path().to_path_buf()
    };
    assert!(!path.exists());
}

#[test]
fn stale_config_dirs_of_dead_processes_are_removed() {
    let parent = crate::project::target_dir().join("xtask-unit").join("docker-config-stale");
    // No process has pid i32::MAX (above pid_max).
    let stale = parent.join(format!("{CONFIG_DIR_PREFIX}{}.0", libc::pid_t::MAX));
    std::fs::create_dir_all(&stale).unwrap();
    let live = DockerConfigDir::create(&parent).unwrap();
    assert!(!stale.exists());
    assert!(live.path().exists());
}

/// A stand-in for `docker` in its own directory, so tests can run in parallel.
fn fake_docker(name: &str, body: &str) -> (PathBuf, Docker) {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::project::target_dir().join("xtask-unit").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("docker");
    std::fs::write(&program, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, Docker::with_program(program))
}

#[test]
fn the_login_process_has_no_password_in_argv_or_environment() {
    // The script's own /proc entry is the process the xtask started (a shebang script runs
    // as `/bin/sh <script> <args>`).
    let (dir, docker) = fake_docker(
        "fake-login",
        r#"out="$(dirname "$0")"
tr '\0' '\n' < /proc/$$/cmdline > "$out/cmdline"
tr '\0' '\n' < /proc/$$/environ > "$out/environ"
cat > "$out/stdin"
echo "Login Succeeded"
"#,
    );
    let sh = Shell::new().unwrap();
    let config = dir.join("config");
    let cmd = docker.login("127.0.0.1:5011", "AWS", Secret::new(PASSWORD), &config);
    assert_eq!(cmd.run_captured(&sh).unwrap(), "Login Succeeded");

    let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
    let argv: Vec<&str> = cmdline.lines().skip(2).collect();
    assert_eq!(argv, ["login", "--username", "AWS", "--password-stdin", "127.0.0.1:5011"]);
    assert!(!cmdline.contains(PASSWORD), "password in argv: {cmdline}");
    let environ = std::fs::read_to_string(dir.join("environ")).unwrap();
    // The copy holds the test's whole environment: it does not stay on disk.
    std::fs::remove_file(dir.join("environ")).unwrap();
    assert!(environ.lines().any(|l| l == format!("DOCKER_CONFIG={}", config.display())));
    assert!(!environ.contains(PASSWORD), "password in the environment");
    assert_eq!(std::fs::read_to_string(dir.join("stdin")).unwrap(), PASSWORD);
}

#[test]
fn a_failed_login_masks_a_password_echoed_back() {
    let (dir, docker) = fake_docker(
        "fake-login-fails",
        "read pw\necho \"Error response from daemon: login attempt with $pw failed\" >&2\nexit 1\n",
    );
    let sh = Shell::new().unwrap();
    let cmd = docker.login("127.0.0.1:5011", "AWS", Secret::new(PASSWORD), &dir);
    let msg = format!("{:#}", cmd.run_captured(&sh).unwrap_err());
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert!(msg.contains("login attempt with **** failed"), "{msg}");
    assert!(msg.contains("--password-stdin 127.0.0.1:5011"), "names the command: {msg}");
}

fn shell_job(label: &str, scripts: &[&str]) -> Job {
    let sh = Docker::with_program("sh");
    Job {
        label: label.into(),
        steps: scripts.iter().map(|s| Step::Run(sh.cmd(["-c", s]))).collect(),
    }
}

#[test]
fn jobs_stream_their_lines_in_order() {
    let sh = Shell::new().unwrap();
    let jobs = [
        shell_job(
            "rails",
            &["echo one; echo two >&2", "printf 'Sending 1kB\\rSending 3kB\\nlast\\n'"],
        ),
        shell_job("nginx", &["echo three"]),
    ];
    let out = run_parallel(&sh, &Reporter::plain(), &jobs);
    assert_eq!(out[0].status, JobStatus::Succeeded);
    assert_eq!(out[0].lines, ["one", "two", "Sending 3kB", "last"]);
    assert_eq!(out[1].lines, ["three"]);
    assert_eq!(out[1].label, "nginx");
}

#[test]
fn a_failed_job_stops_the_others() {
    let sh = Shell::new().unwrap();
    let started = std::time::Instant::now();
    let jobs = [
        // `exec` so that killing the job's process closes its output at once.
        shell_job("nginx", &["echo waiting; exec sleep 120", "echo never"]),
        shell_job("rails", &["echo 'COPY failed: no such file'; exit 3"]),
    ];
    let out = run_parallel(&sh, &Reporter::plain(), &jobs);
    assert!(started.elapsed() < Duration::from_secs(60), "the sleeping job was not stopped");
    assert_eq!(out[0].status, JobStatus::Stopped);
    assert!(!out[0].lines.contains(&"never".to_string()));
    let JobStatus::Failed { command, reason } = &out[1].status else {
        panic!("{:?}", out[1].status)
    };
    assert_eq!(command, "sh -c 'echo '\\''COPY failed: no such file'\\''; exit 3'");
    assert!(reason.contains("exit status: 3"), "{reason}");
    assert_eq!(out[1].tail(1), "COPY failed: no such file");
}

#[test]
fn a_push_stops_when_its_tag_no_longer_names_the_built_image() {
    // The stand-in answers `image inspect` with the ID a concurrent pull left on the tag.
    let (_dir, docker) = fake_docker(
        "fake-moved-tag",
        "case \"$1\" in image) echo sha256:e430;; push) echo pushed \"$2\";; esac\n",
    );
    let sh = Shell::new().unwrap();
    let reference = "127.0.0.1:5011/zenn-clone-nginx:latest";
    let job = |id: &str| Job {
        label: "nginx".into(),
        steps: vec![
            Step::same_image(&docker, reference, id),
            Step::Run(docker.push(reference, Path::new("/c"))),
        ],
    };
    let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:e430")]);
    assert_eq!(out[0].status, JobStatus::Succeeded);
    assert_eq!(out[0].lines, [format!("pushed {reference}")]);

    let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:c117")]);
    let JobStatus::Failed { reason, .. } = &out[0].status else { panic!("{:?}", out[0].status) };
    assert!(
        reason.contains("names sha256:e430 now, not the image this deploy built (sha256:c117)"),
        "{reason}"
    );
    assert!(out[0].lines.is_empty(), "nothing was pushed: {:?}", out[0].lines);
}

#[test]
fn a_missing_program_is_a_failure_with_a_hint() {
    let sh = Shell::new().unwrap();
    let docker = Docker::with_program("/nonexistent/docker");
    let job = Job { label: "rails".into(), steps: vec![Step::Run(docker.version())] };
    let out = run_parallel(&sh, &Reporter::plain(), &[job]);
    let JobStatus::Failed { reason, .. } = &out[0].status else { panic!("{:?}", out[0].status) };
    assert!(reason.contains("install Docker"), "{reason}");
    let err = server_version(&sh, &docker.version()).unwrap_err();
    assert_eq!(Failure::of(&err), Some(Failure::Preflight));
    assert!(format!("{err:#}").contains("start Docker"), "{err:#}");
}

#[test]
fn output_is_stdout_or_the_daemons_own_message() {
    let sh = Shell::new().unwrap();
    let run = |script: &str| output(xshell::cmd!(sh, "sh -c {script}"));
    assert_eq!(run("echo ok; echo noise >&2"), Ok("ok\n".to_string()));
    assert_eq!(
        run("echo 'Error response from daemon: No such container: x' >&2; echo ' again' >&2; exit 1"),
        Err("No such container: x; again".to_string())
    );
    assert_eq!(run("exit 3"), Err("docker exited with exit status: 3".to_string()));
    let missing = output(xshell::cmd!(sh, "/nonexistent/docker version"));
    assert!(
        missing.as_ref().is_err_and(|e| e.starts_with("could not run docker: ")),
        "{missing:?}"
    );
}

#[test]
fn a_smoke_run_replaces_the_entrypoint_without_network_and_with_its_settings_only() {
    let docker = Docker::default();
    let command = ["bundle", "exec", "rails", "runner", "Rails.application.eager_load!"];
    let command: Vec<String> = command.map(String::from).into();
    let env = BTreeMap::from([("SECRET_KEY_BASE".to_string(), "throwaway".to_string())]);
    assert_eq!(
        docker.smoke_run("{image_id.rails}", &command, &env).to_string(),
        "docker run --rm --network none --entrypoint bundle --env SECRET_KEY_BASE=throwaway \
         '{image_id.rails}' exec rails runner 'Rails.application.eager_load!'"
    );
    let nginx = ["nginx".to_string(), "-t".to_string()];
    assert_eq!(
        docker.smoke_run("sha256:abc", &nginx, &BTreeMap::new()).to_string(),
        "docker run --rm --network none --entrypoint nginx sha256:abc -t"
    );
}

#[test]
fn a_step_on_the_built_image_runs_it_by_the_id_its_build_wrote_and_stops_the_job_on_failure() {
    // The stand-in "builds" by writing the ID file; `run` prints the image it was given and
    // fails for the broken one, as an app that cannot boot would.
    let (dir, docker) = fake_docker(
        "fake-smoke",
        "case \"$1\" in\n  build) echo sha256:b1d > \"$3\";;\n  run) echo \"booting $7\"; [ \"$7\" != sha256:bad ];;\n  push) echo pushed;;\nesac\n",
    );
    let iidfile = dir.join("rails.iid");
    let placeholder = "{image_id.rails}";
    let job = |id: &str| Job {
        label: "rails".into(),
        steps: vec![
            Step::Run(DockerCmd::program(
                docker_program(&dir),
                ["build".into(), "--iidfile".into(), iidfile.clone().into_os_string()],
            )),
            Step::OnBuilt {
                iidfile: iidfile.clone(),
                placeholder: placeholder.into(),
                cmd: docker.smoke_run(placeholder, &["rails".into()], &BTreeMap::new()),
            },
            Step::Run(DockerCmd::program(
                "sh",
                ["-c".to_string(), format!("echo {id} > {}", iidfile.display())],
            )),
        ],
    };
    let sh = Shell::new().unwrap();
    let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:bad")]);
    assert_eq!(out[0].status, JobStatus::Succeeded, "{:?}", out[0].lines);
    assert_eq!(out[0].lines, ["booting sha256:b1d"]);

    // A build whose image cannot boot: the smoke step fails, and the step after it never runs.
    std::fs::write(dir.join("docker"), "#!/bin/sh\ncase \"$1\" in\n  build) echo sha256:bad > \"$3\";;\n  run) echo \"booting $7: SyntaxError\"; [ \"$7\" != sha256:bad ];;\nesac\n").unwrap();
    let out = run_parallel(&sh, &Reporter::plain(), &[job("sha256:after")]);
    let JobStatus::Failed { command, reason } = &out[0].status else {
        panic!("{:?}", out[0].status)
    };
    assert!(command.contains("--entrypoint rails sha256:bad"), "{command}");
    assert!(reason.contains("exit status: 1"), "{reason}");
    assert!(reason.ends_with("its first error line: booting sha256:bad: SyntaxError"), "{reason}");
    assert_eq!(out[0].tail(1), "booting sha256:bad: SyntaxError");
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap().trim(), "sha256:bad");
}

fn docker_program(dir: &Path) -> PathBuf {
    dir.join("docker")
}

#[test]
fn a_failure_names_the_first_error_line_even_above_a_long_backtrace() {
    let sh = Shell::new().unwrap();
    let script = "echo booting; echo '/myapp/app/models/broken.rb:3: syntax error, unexpected end-of-input (SyntaxError)'; for i in $(seq 40); do echo \"	from frame $i\"; done; exit 1";
    let out = run_parallel(&sh, &Reporter::plain(), &[shell_job("rails", &[script])]);
    let JobStatus::Failed { reason, .. } = &out[0].status else { panic!("{:?}", out[0].status) };
    assert!(
        reason.ends_with("its first error line: /myapp/app/models/broken.rb:3: syntax error, unexpected end-of-input (SyntaxError)"),
        "{reason}"
    );
    assert!(!out[0].tail(TAIL_LINES).contains("syntax error"), "the tail alone misses it");
}

#[test]
fn a_stopped_build_leaves_only_new_never_started_instruction_containers_to_remove() {
    let before = "aaa\t\"sleep infinity\"\n";
    let after = "aaa\t\"sleep infinity\"\nbbb\t\"/bin/sh -c '#(nop)  ARG NGINX_IMAGE=unset'\"\nccc\t\"my-app --serve\"\n";
    assert_eq!(left_by_stopped_builds(before, after), ["bbb"]);
    assert!(left_by_stopped_builds(after, after).is_empty());
    assert_eq!(
        Docker::default().created_containers().to_string(),
        "docker ps --all --no-trunc --filter status=created --format '{{.ID}}\t{{.Command}}'"
    );
}
