use std::ffi::OsStr;
use std::process::Command;

use super::*;

const TASK: &str = "0123456789abcdef0123456789abcdef";
const MASTER_KEY: &str = "master-key-value-0f3a";
const PASSWORD: &str = "db-password-9d2e";

fn labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A container of the sandbox's task `TASK`, with no option set.
fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("zenn-sandbox-01234567-{name}"),
        network: Network::Container("zenn-sandbox-01234567".into()),
        labels: labels(&[
            ("zenn-sandbox.dir", "/repo/target/sandbox"),
            ("zenn-sandbox.task", TASK),
            ("zenn-sandbox.role", "container"),
            ("zenn-sandbox.container", name),
            ("zenn-sandbox.essential", "true"),
            ("zenn-sandbox.image", image),
            ("zenn-sandbox.image-digest", "sha256:d1"),
        ]),
        publish: vec![],
        memory_mib: None,
        memory_reservation_mib: None,
        env: vec![],
        secret_env: vec![],
        volumes_from: vec![],
        health: HealthCheck::Disabled,
        init: false,
        workdir: None,
        user: None,
        entrypoint: None,
        image: format!("{image}@sha256:d1"),
        args: vec![],
    }
}

fn every_three_seconds(command: &str) -> HealthCheck {
    HealthCheck::Shell {
        command: command.into(),
        interval: Duration::from_secs(3),
        timeout: Duration::from_secs(5),
        retries: 3,
        start_period: None,
    }
}

#[test]
fn the_pause_container_runs_detached_on_the_sandbox_network_and_publishes_its_ports() {
    let sh = Shell::new().unwrap();
    let pause = ContainerSpec {
        name: "zenn-sandbox-01234567".into(),
        network: Network::Named("zenn-sandbox".into()),
        labels: labels(&[
            ("zenn-sandbox.dir", "/repo/target/sandbox"),
            ("zenn-sandbox.task", TASK),
            ("zenn-sandbox.role", "pause"),
            ("zenn-sandbox.containers", "rails,nginx"),
            ("zenn-sandbox.address", "127.0.0.5"),
        ]),
        publish: vec![Publish {
            address: Ipv4Addr::new(127, 0, 0, 5),
            port: 80,
            protocol: "tcp".into(),
        }],
        health: HealthCheck::Image,
        image: "zenn-sandbox/pause:busybox".into(),
        args: vec!["sleep".into(), "2147483647".into()],
        ..container("pause", "unused")
    };
    assert_eq!(
        run_detached(&sh, &pause).to_string(),
        "docker run --detach --name zenn-sandbox-01234567 --network zenn-sandbox \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=pause --label zenn-sandbox.containers=rails,nginx \
         --label zenn-sandbox.address=127.0.0.5 --publish 127.0.0.5:80:80/tcp \
         zenn-sandbox/pause:busybox sleep 2147483647"
    );
}

#[test]
fn rails_is_created_with_its_environment_secret_names_and_health_check() {
    let sh = Shell::new().unwrap();
    let rails = ContainerSpec {
        memory_reservation_mib: Some(384),
        env: vec![
            ("RAILS_ENV".into(), "production".into()),
            ("RAILS_LOG_TO_STDOUT".into(), "1".into()),
        ],
        secret_env: vec![
            ("RAILS_MASTER_KEY".into(), Secret::new(MASTER_KEY)),
            ("SECRET_KEY_BASE".into(), Secret::new("skb")),
            ("DATABASE_URL".into(), Secret::new("mysql2://root:pw@db/app")),
        ],
        health: every_three_seconds(
            "curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1",
        ),
        ..container("rails", "127.0.0.1:5000/zenn-clone-rails")
    };
    assert_eq!(
        create(&sh, &rails).to_string(),
        "docker create --name zenn-sandbox-01234567-rails \
         --network container:zenn-sandbox-01234567 \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=container --label zenn-sandbox.container=rails \
         --label zenn-sandbox.essential=true \
         --label zenn-sandbox.image=127.0.0.1:5000/zenn-clone-rails \
         --label zenn-sandbox.image-digest=sha256:d1 \
         --memory-reservation 384m \
         --env RAILS_ENV=production --env RAILS_LOG_TO_STDOUT=1 \
         --env RAILS_MASTER_KEY --env SECRET_KEY_BASE --env DATABASE_URL \
         --health-cmd \"curl --unix-socket /myapp/tmp/sockets/puma.sock localhost/api/v1/health_check || exit 1\" \
         --health-interval 3s --health-timeout 5s --health-retries 3 \
         127.0.0.1:5000/zenn-clone-rails@sha256:d1"
    );
}

#[test]
fn nginx_is_created_with_the_rails_volumes() {
    let sh = Shell::new().unwrap();
    let nginx = ContainerSpec {
        memory_reservation_mib: Some(64),
        volumes_from: vec![VolumesFrom {
            container: "zenn-sandbox-01234567-rails".into(),
            read_only: false,
        }],
        health: every_three_seconds("curl -f http://localhost/api/v1/health_check || exit 1"),
        ..container("nginx", "127.0.0.1:5000/zenn-clone-nginx")
    };
    assert_eq!(
        create(&sh, &nginx).to_string(),
        "docker create --name zenn-sandbox-01234567-nginx \
         --network container:zenn-sandbox-01234567 \
         --label zenn-sandbox.dir=/repo/target/sandbox \
         --label zenn-sandbox.task=0123456789abcdef0123456789abcdef \
         --label zenn-sandbox.role=container --label zenn-sandbox.container=nginx \
         --label zenn-sandbox.essential=true \
         --label zenn-sandbox.image=127.0.0.1:5000/zenn-clone-nginx \
         --label zenn-sandbox.image-digest=sha256:d1 \
         --memory-reservation 64m \
         --volumes-from zenn-sandbox-01234567-rails \
         --health-cmd \"curl -f http://localhost/api/v1/health_check || exit 1\" \
         --health-interval 3s --health-timeout 5s --health-retries 3 \
         127.0.0.1:5000/zenn-clone-nginx@sha256:d1"
    );
}

#[test]
fn every_option_of_a_container_has_its_place_before_the_image() {
    let sh = Shell::new().unwrap();
    let job = ContainerSpec {
        labels: vec![],
        memory_mib: Some(256),
        memory_reservation_mib: Some(128),
        volumes_from: vec![VolumesFrom { container: "app".into(), read_only: true }],
        health: HealthCheck::Shell {
            command: "wget -q 'http://localhost/a b'".into(),
            interval: Duration::from_millis(1500),
            timeout: Duration::from_secs(2),
            retries: 5,
            start_period: Some(Duration::from_secs(20)),
        },
        init: true,
        workdir: Some("/srv".into()),
        user: Some("1000:1000".into()),
        entrypoint: Some("sh".into()),
        image: "r/job@sha256:d1".into(),
        args: vec!["-c".into(), "echo \"$GREETING\"; exit 3".into()],
        ..container("job", "r/job")
    };
    assert_eq!(
        create(&sh, &job).to_string(),
        "docker create --name zenn-sandbox-01234567-job \
         --network container:zenn-sandbox-01234567 --memory 256m --memory-reservation 128m \
         --volumes-from app:ro --health-cmd \"wget -q \\'http://localhost/a b\\'\" \
         --health-interval 1500ms --health-timeout 2s --health-retries 5 \
         --health-start-period 20s --init --workdir /srv --user 1000:1000 --entrypoint sh \
         r/job@sha256:d1 -c \"echo \\\"$GREETING\\\"; exit 3\""
    );
}

#[test]
fn secret_values_go_to_the_environment_of_docker_never_its_arguments() {
    let sh = Shell::new().unwrap();
    let spec = ContainerSpec {
        secret_env: vec![("RAILS_MASTER_KEY".into(), Secret::new(MASTER_KEY))],
        ..container("rails", "r/rails")
    };
    assert!(!format!("{spec:?}").contains(MASTER_KEY), "Debug shows the secret");
    let server = ServerSpec {
        name: "zenn-sandbox-1a2b3c-db".into(),
        label: ("zenn-sandbox.dir".into(), "/repo/target/sandbox".into()),
        network: "zenn-sandbox-1a2b3c".into(),
        volume: ("/repo/target/sandbox/mariadb".into(), "/var/lib/mysql".into()),
        secret_env: ("MARIADB_ROOT_PASSWORD".into(), Secret::new(PASSWORD)),
        image: "zenn-sandbox/mariadb:10.11".into(),
    };
    assert!(!format!("{server:?}").contains(PASSWORD), "Debug shows the secret");
    let commands = [
        (run_detached(&sh, &spec), "RAILS_MASTER_KEY", MASTER_KEY),
        (create(&sh, &spec), "RAILS_MASTER_KEY", MASTER_KEY),
        (run_server(&sh, &server), "MARIADB_ROOT_PASSWORD", PASSWORD),
        (exec(&sh, "db", &[("MYSQL_PWD", PASSWORD)], &["mariadb"]), "MYSQL_PWD", PASSWORD),
    ];
    for (cmd, name, value) in commands {
        let shown = cmd.to_string();
        assert!(!shown.contains(value), "secret in {shown}");
        assert!(shown.contains(&format!(" --env {name} ")), "{shown}");
        let command: Command = cmd.into();
        let args: Vec<&OsStr> = command.get_args().collect();
        assert!(args.iter().all(|a| !a.to_string_lossy().contains(value)), "secret in {args:?}");
        let envs: Vec<(&OsStr, Option<&OsStr>)> = command.get_envs().collect();
        assert!(envs.contains(&(OsStr::new(name), Some(OsStr::new(value)))), "{envs:?}");
    }
}

#[test]
fn the_database_runs_detached_with_its_data_mounted() {
    let sh = Shell::new().unwrap();
    let server = ServerSpec {
        name: "zenn-sandbox-1a2b3c-db".into(),
        label: ("zenn-sandbox.dir".into(), "/work/checkout/target/sandbox".into()),
        network: "zenn-sandbox-1a2b3c".into(),
        volume: ("/work/checkout/target/sandbox/mariadb".into(), "/var/lib/mysql".into()),
        secret_env: ("MARIADB_ROOT_PASSWORD".into(), Secret::new(PASSWORD)),
        image: "zenn-sandbox/mariadb:10.11".into(),
    };
    assert_eq!(
        run_server(&sh, &server).to_string(),
        "docker run --detach --name zenn-sandbox-1a2b3c-db --label zenn-sandbox.dir=/work/checkout/target/sandbox \
         --network zenn-sandbox-1a2b3c --volume /work/checkout/target/sandbox/mariadb:/var/lib/mysql \
         --env MARIADB_ROOT_PASSWORD zenn-sandbox/mariadb:10.11"
    );
    let ping = ["mariadb-admin", "--protocol=tcp", "--connect-timeout=2", "ping"];
    assert_eq!(
        exec(&sh, "zenn-sandbox-1a2b3c-db", &[], &ping).to_string(),
        "docker exec zenn-sandbox-1a2b3c-db mariadb-admin --protocol=tcp --connect-timeout=2 ping"
    );
    let query = ["mariadb", "--user=root", "--execute", "SELECT 1"];
    assert_eq!(
        exec(&sh, "zenn-sandbox-1a2b3c-db", &[("MYSQL_PWD", PASSWORD)], &query).to_string(),
        "docker exec --env MYSQL_PWD zenn-sandbox-1a2b3c-db mariadb --user=root --execute \"SELECT 1\""
    );
}

#[test]
fn the_other_docker_commands_name_only_the_sandbox_and_task_they_are_for() {
    let sh = Shell::new().unwrap();
    let owner = ("zenn-sandbox.dir", "/repo/target/sandbox");
    let ids = ["c1".to_string(), "c2".to_string()];
    let texts = [
        pull(&sh, "127.0.0.1:5000/zenn-clone-rails:latest").to_string(),
        image_repo_digests(&sh, "r/app:latest").to_string(),
        list(&sh, &[owner, ("zenn-sandbox.task", TASK)]).to_string(),
        list_label_values(&sh, owner, "zenn-sandbox.task").to_string(),
        inspect(&sh, &ids).to_string(),
        stop(&sh, Duration::from_secs(5), &ids).to_string(),
        remove(&sh, &ids).to_string(),
        network_create(&sh, owner, "zenn-sandbox").to_string(),
    ];
    assert_eq!(
        texts,
        [
            "docker pull --quiet 127.0.0.1:5000/zenn-clone-rails:latest".to_string(),
            "docker image inspect --format \"{{json .RepoDigests}}\" r/app:latest".to_string(),
            format!(
                "docker ps --all --quiet --no-trunc --filter label=zenn-sandbox.dir=/repo/target/sandbox \
                 --filter label=zenn-sandbox.task={TASK}"
            ),
            concat!(
                "docker ps --all --filter label=zenn-sandbox.dir=/repo/target/sandbox ",
                r#"--format "{{.Label \"zenn-sandbox.task\"}}""#
            )
            .to_string(),
            "docker inspect --type container c1 c2".to_string(),
            "docker stop --time 5 c1 c2".to_string(),
            "docker rm --force c1 c2".to_string(),
            "docker network create --label zenn-sandbox.dir=/repo/target/sandbox zenn-sandbox".to_string(),
        ]
    );
}

#[test]
fn what_down_removes_is_what_carries_the_sandbox_label() {
    let sh = Shell::new().unwrap();
    let owner = ("zenn-sandbox.dir", "/repo/target/sandbox");
    let texts = [
        list_short(&sh, owner).to_string(),
        remove_with_volumes(&sh, &["a1", "b2"]).to_string(),
        network_list(&sh, owner).to_string(),
        network_remove(&sh, &["n1"]).to_string(),
        network_inspect(&sh, "zenn-sandbox").to_string(),
    ];
    assert_eq!(
        texts,
        [
            "docker ps -aq --filter label=zenn-sandbox.dir=/repo/target/sandbox",
            "docker rm -f -v a1 b2",
            "docker network ls -q --filter label=zenn-sandbox.dir=/repo/target/sandbox",
            "docker network rm n1",
            "docker network inspect --format {{.Name}} zenn-sandbox",
        ]
    );
}

#[test]
fn a_container_is_started_inspected_and_its_output_read() {
    let sh = Shell::new().unwrap();
    assert_eq!(
        start(&sh, "zenn-sandbox-1a2b3c-db").to_string(),
        "docker start zenn-sandbox-1a2b3c-db"
    );
    assert_eq!(
        status_and_label(&sh, "zenn-sandbox-1a2b3c-db", "zenn-sandbox.dir").to_string(),
        r#"docker container inspect --format "{{.State.Status}} {{index .Config.Labels \"zenn-sandbox.dir\"}}" zenn-sandbox-1a2b3c-db"#
    );
    assert_eq!(
        logs_tail(&sh, "zenn-sandbox-1a2b3c-db", 5).to_string(),
        "docker logs --tail 5 zenn-sandbox-1a2b3c-db"
    );
    let follow = Docker::default().logs_follow("zenn-sandbox-01234567-rails");
    assert_eq!(follow.to_string(), "docker logs --follow zenn-sandbox-01234567-rails");
    assert!(follow.stdin().is_none() && follow.config_dir().is_none());
}

#[test]
fn images_are_inspected_made_and_removed_by_name() {
    let sh = Shell::new().unwrap();
    let image = "zenn-sandbox/ruby:3.1";
    let texts = [
        image_id(&sh, image).to_string(),
        image_label(&sh, image, "zenn-sandbox.recipe").to_string(),
        image_size(&sh, image).to_string(),
        image_remove(&sh, "sha256:ab").to_string(),
        import(&sh, &["VOLUME /srv", "CMD [\"sh\"]"], Path::new("/tmp/b/rootfs.tar"), "t/b:1")
            .to_string(),
    ];
    assert_eq!(
        texts,
        [
            "docker image inspect --format {{.Id}} zenn-sandbox/ruby:3.1",
            r#"docker image inspect --format "{{ index .Config.Labels \"zenn-sandbox.recipe\" }}" zenn-sandbox/ruby:3.1"#,
            "docker image inspect --format {{.Size}} zenn-sandbox/ruby:3.1",
            "docker image rm sha256:ab",
            r#"docker import --change "VOLUME /srv" --change "CMD [\"sh\"]" /tmp/b/rootfs.tar t/b:1"#,
        ]
    );
    let piped =
        Docker::default().import_stdin(&["EXPOSE 80", "LABEL k=v"], "zenn-sandbox/nginx:1.22");
    assert_eq!(
        piped.to_string(),
        "docker import --change 'EXPOSE 80' --change 'LABEL k=v' - zenn-sandbox/nginx:1.22"
    );
}
