//! The `crictl` binary end to end against the real containerd of the test
//! environment: versions and runtime facts, pulls (plain, with credentials, a
//! missing tag), the pod and container lifecycle by ID prefix with every
//! listing and output format, `exec -s`, stats, images and removal (on a
//! private containerd, so the shared images stay), config and endpoint
//! errors, and the streaming commands up to the seam they hand over at.
//!
//! Every test makes its own pods (unique names) and removes them on drop,
//! also when an assertion fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use node_sdk_e2e::{PrivateContainerd, TestEnv, unique_name};
use serde_json::Value;

/// The binary under test, with its own config file and scratch directory.
struct Crictl {
    dir: PathBuf,
    config: PathBuf,
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Crictl {
    /// A crictl whose config file names `endpoint` (and a generous timeout:
    /// the machine is shared).
    fn new(tag: &str, endpoint: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name(tag));
        std::fs::create_dir_all(&dir).expect("creating the test's directory");
        let config = dir.join("crictl.yaml");
        std::fs::write(
            &config,
            format!("runtime-endpoint: {endpoint}\ntimeout: 30\ndebug: false\n"),
        )
        .expect("writing crictl.yaml");
        Self { dir, config }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crictl"));
        cmd.args(args)
            .env("CRI_CONFIG_FILE", &self.config)
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .env_remove("IMAGE_SERVICE_ENDPOINT")
            .env_remove("CRICTL_CREDS")
            .env_remove("CRICTL_AUTH")
            .env_remove("CRICTL_PULL_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs crictl with `args`, whatever the outcome.
    fn run(&self, args: &[&str]) -> Run {
        Run::from(
            self.command(args)
                .output()
                .unwrap_or_else(|e| panic!("running crictl {args:?}: {e}")),
        )
    }

    /// Runs crictl feeding `stdin`.
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running crictl {args:?}: {e}"));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("writing crictl's stdin");
        Run::from(child.wait_with_output().expect("waiting for crictl"))
    }

    /// Runs crictl and returns its stdout; fails the test unless it exits 0.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "crictl {args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Runs crictl and returns its stderr; fails the test unless it exits 1.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(1),
            "crictl {args:?} should fail:\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        run.stderr
    }

    /// `-o json` output of a command, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("crictl {args:?}: {e}: {text}"))
    }

    /// Writes a file in the test's directory and returns its path as text.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("writing a test file");
        path.to_string_lossy().into_owned()
    }

    /// A pod config (JSON, proto field names) for a pod named `name`.
    fn pod_config(&self, name: &str) -> String {
        let logs = self.dir.join(format!("logs-{name}"));
        let config = serde_json::json!({
            "metadata": {"name": name, "namespace": format!("ns-{name}"), "uid": format!("uid-{name}")},
            "log_directory": logs.to_string_lossy(),
            "labels": {"app": name, "suite": "crictl-e2e"},
        });
        self.write(&format!("pod-{name}.json"), &config.to_string())
    }

    /// A container config (YAML, camelCase and proto names mixed).
    fn container_config(&self, name: &str, image: &str, command: &[&str]) -> String {
        let command: Vec<String> = command.iter().map(|c| format!("{c:?}")).collect();
        let yaml = format!(
            "metadata:\n  name: {name}\nimage:\n  image: {image}\ncommand: [{}]\nlogPath: {name}.log\nlabels:\n  role: {name}\n",
            command.join(", ")
        );
        self.write(&format!("container-{name}.yaml"), &yaml)
    }

    /// Runs a pod from `config`; it is stopped and removed when the guard drops.
    fn run_pod(&self, config: &str) -> PodGuard<'_> {
        let id = self.ok(&["runp", config]).trim().to_owned();
        assert!(is_full_id(&id), "runp prints the new pod's ID: {id:?}");
        PodGuard { crictl: self, id }
    }
}

impl Drop for Crictl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes its pod (and so its containers) when dropped, panicking or not.
struct PodGuard<'a> {
    crictl: &'a Crictl,
    id: String,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let _ = self.crictl.run(&["rmp", "-f", &self.id]);
    }
}

fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

fn pull_busybox(crictl: &Crictl, env: &TestEnv) {
    let out = crictl.ok(&["pull", env.get("BUSYBOX_IMAGE")]);
    assert!(out.starts_with("Image is up to date for "), "{out}");
}

#[test]
fn version_info_imagefsinfo_and_runtime_config() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-info", env.cri_endpoint());

    let version = crictl.ok(&["version"]);
    let version_lines = lines(&version);
    assert_eq!(version_lines.len(), 4, "{version}");
    assert_eq!(version_lines[0], "Version:  0.1.0");
    assert_eq!(version_lines[1], "RuntimeName:  containerd");
    assert!(
        version_lines[2].starts_with("RuntimeVersion:  "),
        "{version}"
    );
    assert_eq!(version_lines[3], "RuntimeApiVersion:  v1");

    let info = crictl.json(&["info"]);
    let conditions = info["status"]["conditions"].as_array().expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "RuntimeReady" && c["status"] == true),
        "{info}"
    );
    assert!(
        info.get("config").is_some(),
        "verbose info is merged in: {info}"
    );
    let quiet = crictl.json(&["info", "-q"]);
    assert!(quiet.get("config").is_none(), "{quiet}");
    let yaml = crictl.ok(&["info", "-o", "yaml", "-q"]);
    assert!(yaml.starts_with("status:\n  conditions:\n"), "{yaml}");
    let err = crictl.fails(&["info", "-o", "xml"]);
    assert!(err.contains("unsupported format: \\\"xml\\\""), "{err}");

    let fs = crictl.json(&["imagefsinfo"]);
    let filesystems = fs["status"]["imageFilesystems"]
        .as_array()
        .expect("imageFilesystems");
    assert!(!filesystems.is_empty(), "{fs}");
    assert!(filesystems[0]["fsId"]["mountpoint"].is_string(), "{fs}");
    let table = crictl.ok(&["imagefsinfo", "-o", "table"]);
    assert!(
        table.contains("Image Filesystem \nTimeStamp[0]: "),
        "{table}"
    );

    // containerd 1.6 lacks RuntimeConfig; newer runtimes answer with the driver.
    let config = crictl.run(&["runtime-config"]);
    match config.code {
        Some(0) => assert!(
            config.stdout.starts_with("cgroup driver:   "),
            "{}",
            config.stdout
        ),
        _ => assert!(
            config.stderr.contains(
                "get runtime config: call RuntimeConfig RPC: rpc error: code = Unimplemented"
            ),
            "{}",
            config.stderr
        ),
    }
}

#[test]
fn pull_plain_with_credentials_and_a_missing_tag() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-pull", env.cri_endpoint());
    pull_busybox(&crictl, &env);

    let auth_image = env.get("AUTH_BUSYBOX_IMAGE");
    let user = env.get("AUTH_REGISTRY_USER");
    let password = env.get("AUTH_REGISTRY_PASSWORD");

    let err = crictl.fails(&["pull", auth_image]);
    assert!(err.contains("pulling image: rpc error: code = "), "{err}");
    assert!(err.contains("401"), "the registry refused us: {err}");

    let creds = format!("{user}:{password}");
    let out = crictl.ok(&["pull", "--creds", &creds, auth_image]);
    assert!(out.starts_with("Image is up to date for sha256:"), "{out}");

    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    crictl.ok(&["pull", "--auth", &auth, auth_image]);

    let prompted =
        crictl.run_with_stdin(&["pull", "-u", user, auth_image], &format!("{password}\n"));
    assert_eq!(prompted.code, Some(0), "{}", prompted.stderr);
    assert!(
        prompted.stdout.starts_with("Enter Password:\n"),
        "{}",
        prompted.stdout
    );
    assert!(
        prompted.stdout.contains("Image is up to date for "),
        "{}",
        prompted.stdout
    );
    crictl.ok(&["pull", "-u", user, "-p", password, auth_image]);

    let err = crictl.fails(&["pull", "--creds", &creds, "--auth", &auth, auth_image]);
    assert!(
        err.contains("both `--creds` and `--auth` are specified"),
        "{err}"
    );

    let missing = format!("{}/node-sdk/busybox:no-such-tag", env.get("REGISTRY"));
    let err = crictl.fails(&["pull", &missing]);
    assert!(
        err.contains("pulling image: rpc error: code = NotFound desc = "),
        "{err}"
    );
}

#[test]
fn pod_and_container_lifecycle_by_id_prefix() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-life", env.cri_endpoint());
    pull_busybox(&crictl, &env);
    let name = unique_name("crictl-life");
    let pod_config = crictl.pod_config(&name);
    let pod = crictl.run_pod(&pod_config);
    let pod_prefix = &pod.id[..12];
    let namespace = format!("ns-{name}");
    let name_regex = format!("^{name}$");

    // pods: table, -q, filters, JSON and YAML.
    let table = crictl.ok(&["pods", "--name", &name_regex]);
    let rows = lines(&table);
    assert!(
        rows[0].starts_with("POD ID              CREATED"),
        "{table}"
    );
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[1].starts_with(&format!("{}       ", &pod.id[..13])),
        "{table}"
    );
    assert!(
        rows[1].contains("Ready") && rows[1].contains(&namespace),
        "{table}"
    );
    assert_eq!(
        crictl.ok(&["pods", "-q", "--name", &name_regex]).trim(),
        pod.id
    );
    assert_eq!(
        crictl
            .ok(&["pods", "-q", "--namespace", &namespace, "--state", "ready"])
            .trim(),
        pod.id
    );
    assert_eq!(
        crictl.ok(&["pods", "-q", "--name", &name_regex, "--state", "notready"]),
        ""
    );
    let listed = crictl.json(&["pods", "-o", "json", "--label", &format!("app={name}")]);
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], pod.id.as_str());
    assert_eq!(items[0]["metadata"]["name"], name.as_str());
    assert_eq!(items[0]["state"], "SANDBOX_READY");
    assert!(
        items[0]["createdAt"].is_string(),
        "int64 as a string: {listed}"
    );
    let yaml = crictl.ok(&["pods", "-o", "yaml", "--id", pod_prefix]);
    assert!(yaml.starts_with("items:\n- annotations:"), "{yaml}");
    assert!(yaml.contains(&format!("  id: {}\n", pod.id)), "{yaml}");

    // inspectp by prefix: JSON with readable times and the runtime's info.
    let status = crictl.json(&["inspectp", pod_prefix]);
    assert_eq!(status["status"]["id"], pod.id.as_str());
    assert_eq!(status["status"]["state"], "SANDBOX_READY");
    assert_eq!(
        status["status"]["metadata"]["namespace"],
        namespace.as_str()
    );
    let created = status["status"]["createdAt"].as_str().expect("createdAt");
    assert!(created.contains('T') && created.len() > 19, "{created}");
    assert!(status.get("info").is_some(), "{status}");
    let table = crictl.ok(&["inspectp", "-o", "table", pod_prefix]);
    assert!(
        table.starts_with(&format!("ID: {}\nName: {name}\n", pod.id)),
        "{table}"
    );

    // create (YAML container config) in the pod given by prefix, then start.
    let app = format!("app-{name}");
    let container_config =
        crictl.container_config(&app, env.get("BUSYBOX_IMAGE"), &["sleep", "3600"]);
    let container = crictl
        .ok(&["create", pod_prefix, &container_config, &pod_config])
        .trim()
        .to_owned();
    assert!(is_full_id(&container), "{container}");
    let prefix = &container[..10];
    let created = crictl.json(&["ps", "-a", "-o", "json", "--pod", pod_prefix]);
    assert_eq!(
        created["containers"][0]["state"], "CONTAINER_CREATED",
        "{created}"
    );
    assert_eq!(crictl.ok(&["start", prefix]).trim(), prefix);

    // ps: -q by pod, JSON by name, the table.
    assert_eq!(
        crictl.ok(&["ps", "-q", "--pod", pod_prefix]).trim(),
        container
    );
    let listed = crictl.json(&["ps", "-o", "json", "--name", &format!("^{app}$")]);
    assert_eq!(
        listed["containers"][0]["id"],
        container.as_str(),
        "{listed}"
    );
    assert_eq!(listed["containers"][0]["podSandboxId"], pod.id.as_str());
    let table = crictl.ok(&["ps", "--id", prefix]);
    let rows = lines(&table);
    assert!(rows[0].starts_with("CONTAINER           IMAGE"), "{table}");
    assert!(rows[1].starts_with(&container[..13]), "{table}");
    assert!(
        rows[1].contains("Running") && rows[1].contains(&app),
        "{table}"
    );
    assert_eq!(
        crictl
            .ok(&["ps", "-q", "--label", &format!("role={app}")])
            .trim(),
        container
    );

    // inspect by prefix.
    let status = crictl.json(&["inspect", prefix]);
    assert_eq!(status["status"]["id"], container.as_str());
    assert_eq!(status["status"]["state"], "CONTAINER_RUNNING");
    assert_ne!(status["status"]["startedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(status["status"]["finishedAt"], "0001-01-01T00:00:00Z");
    assert!(status["info"].is_object(), "{status}");

    // exec -s: output (stdout then stderr, as crictl prints them) and exit codes.
    let out = crictl.ok(&["exec", "-s", prefix, "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(out, "out\n\nerr\n\n");
    let failed = crictl.run(&["exec", "-s", prefix, "sh", "-c", "echo before; exit 7"]);
    assert_eq!(failed.code, Some(7), "{}", failed.stderr);
    assert_eq!(failed.stdout, "before\n\n\n");
    assert!(
        failed.stderr.contains("non-zero exit code"),
        "{}",
        failed.stderr
    );
    let by_filter = crictl.ok(&["exec", "-s", "--name", &format!("^{app}$"), "echo", "hi"]);
    assert_eq!(by_filter, format!("{container}:\nhi\n\n\n"));

    // stats for this container: one sample as JSON, and the sampled table.
    let stats = crictl.json(&["stats", "-o", "json", "--id", prefix]);
    assert_eq!(
        stats["stats"][0]["attributes"]["id"],
        container.as_str(),
        "{stats}"
    );
    let table = crictl.ok(&["stats", prefix]);
    let rows = lines(&table);
    assert!(rows[0].starts_with("CONTAINER           NAME"), "{table}");
    assert!(
        rows.iter().any(|r| r.starts_with(&container[..13])),
        "{table}"
    );

    // stop (SIGKILL with -t 0) and rm by prefix.
    assert_eq!(crictl.ok(&["stop", "-t", "0", prefix]).trim(), prefix);
    let exited = crictl.json(&["inspect", prefix]);
    assert_eq!(exited["status"]["state"], "CONTAINER_EXITED");
    assert_eq!(exited["status"]["exitCode"], 137);
    assert_eq!(
        crictl.ok(&["ps", "-q", "--pod", pod_prefix]),
        "",
        "not running"
    );
    assert_eq!(crictl.ok(&["rm", prefix]).trim(), prefix);
    assert_eq!(crictl.ok(&["ps", "-a", "-q", "--pod", pod_prefix]), "");

    // stopp / rmp by prefix; afterwards the pod is gone.
    let err = crictl.fails(&["rmp", pod_prefix]);
    assert!(
        err.contains(&format!(
            "pod sandbox \\\"{pod_prefix}\\\" is running, please stop it first"
        )),
        "{err}"
    );
    assert_eq!(
        crictl.ok(&["stopp", pod_prefix]).trim(),
        format!("Stopped sandbox {pod_prefix}")
    );
    let stopped = crictl.json(&["pods", "-o", "json", "--id", pod_prefix]);
    assert_eq!(stopped["items"][0]["state"], "SANDBOX_NOTREADY");
    assert_eq!(
        crictl.ok(&["rmp", pod_prefix]).trim(),
        format!("Removed sandbox {pod_prefix}")
    );
    assert_eq!(crictl.ok(&["pods", "-q", "--name", &name_regex]), "");
    let err = crictl.fails(&["inspectp", &pod.id]);
    assert!(
        err.contains(
            "get the status of pod sandboxes: get pod sandbox status: rpc error: code = NotFound"
        ),
        "{err}"
    );
}

#[test]
fn run_starts_a_pod_and_a_container() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-run", env.cri_endpoint());
    let name = unique_name("crictl-run");
    let pod_config = crictl.pod_config(&name);
    let container_config =
        crictl.container_config("main", env.get("BUSYBOX_IMAGE"), &["sleep", "3600"]);
    let run = crictl.run(&["run", &container_config, &pod_config]);
    let pod_id = crictl
        .ok(&["pods", "-q", "--name", &format!("^{name}$")])
        .trim()
        .to_owned();
    let _pod = PodGuard {
        crictl: &crictl,
        id: pod_id.clone(),
    };
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let container = run.stdout.trim();
    assert!(is_full_id(container), "{}", run.stdout);
    let listed = crictl.json(&["ps", "-o", "json", "--pod", &pod_id]);
    assert_eq!(listed["containers"][0]["id"], container);
    assert_eq!(listed["containers"][0]["state"], "CONTAINER_RUNNING");
    // rmp -f stops and removes a ready pod with its containers.
    let out = crictl.ok(&["rmp", "-f", &pod_id[..12]]);
    assert!(
        out.contains("Stopped sandbox ") && out.contains("Removed sandbox "),
        "{out}"
    );
}

#[test]
fn ambiguous_prefixes_fail_and_unknown_ids_reach_the_runtime() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-prefix", env.cri_endpoint());
    pull_busybox(&crictl, &env);
    let name = unique_name("crictl-prefix");
    let pod_config = crictl.pod_config(&name);
    let pod = crictl.run_pod(&pod_config);
    // 17 containers: two of them share a first hex digit, whatever the IDs.
    let container_config =
        crictl.container_config("c", env.get("BUSYBOX_IMAGE"), &["sleep", "3600"]);
    let mut ids = Vec::new();
    for attempt in 0..17 {
        let config = container_config.replace("c.yaml", &format!("c{attempt}.yaml"));
        let yaml = std::fs::read_to_string(&container_config)
            .expect("reading the container config")
            .replace("name: c\n", &format!("name: c{attempt}\n"));
        std::fs::write(&config, yaml).expect("writing a container config");
        ids.push(
            crictl
                .ok(&["create", &pod.id, &config, &pod_config])
                .trim()
                .to_owned(),
        );
    }
    let all = crictl.ok(&["ps", "-a", "-q"]);
    let everyone: Vec<&str> = lines(&all);
    let shared = ids
        .iter()
        .map(|id| &id[..1])
        .find(|first| everyone.iter().filter(|id| id.starts_with(first)).count() > 1)
        .expect("pigeonhole: 17 IDs share a first hex digit");
    let err = crictl.fails(&["inspect", shared]);
    assert!(
        err.contains(&format!(
            "container ID prefix \\\"{shared}\\\" is ambiguous: it matches "
        )),
        "{err}"
    );
    // A prefix that names nothing goes to the runtime, whose answer is shown.
    let err = crictl.fails(&["inspect", "not-an-id"]);
    assert!(
        err.contains(
            "get the status of containers: get container status: rpc error: code = NotFound"
        ),
        "{err}"
    );
    let err = crictl.fails(&["stopp", "not-an-id"]);
    assert!(
        err.contains("stopping the pod sandbox \\\"not-an-id\\\": rpc error: code = NotFound"),
        "{err}"
    );
}

#[test]
fn images_inspecti_and_rmi_on_a_private_containerd() {
    let env = TestEnv::require();
    // Removing an image removes every tag of it; the shared containerd's images
    // are used by other tests, so this runs on a containerd of its own.
    let containerd = PrivateContainerd::start("crictl-images");
    let crictl = Crictl::new("crictl-images", &containerd.endpoint());
    let busybox = env.get("BUSYBOX_IMAGE");

    let empty = crictl.ok(&["images"]);
    assert_eq!(
        empty,
        "IMAGE               TAG                 IMAGE ID            SIZE\n"
    );
    pull_busybox(&crictl, &env);

    let table = crictl.ok(&["images"]);
    let rows = lines(&table);
    assert_eq!(rows.len(), 2, "{table}");
    let (repository, tag) = busybox.rsplit_once(':').expect("a tagged image");
    assert!(
        rows[1].starts_with(&format!("{repository}   {tag}")),
        "{table}"
    );
    let id = crictl.ok(&["images", "-q"]).trim().to_owned();
    assert!(id.starts_with("sha256:") && is_full_id(&id[7..]), "{id}");
    assert!(rows[1].contains(&id[7..20]), "13-character ID: {table}");
    let listed = crictl.json(&["img", "-o", "json"]);
    assert_eq!(listed["images"][0]["id"], id.as_str());
    assert_eq!(listed["images"][0]["repoTags"][0], busybox);
    assert!(
        listed["images"][0]["size"].is_string(),
        "uint64 as a string: {listed}"
    );

    // inspecti by ID prefix (with or without the algorithm) and by reference.
    let by_prefix = crictl.json(&["inspecti", &id[7..19]]);
    assert_eq!(by_prefix["status"]["id"], id.as_str());
    assert_eq!(by_prefix["status"]["repoTags"][0], busybox);
    let by_reference = crictl.json(&["inspecti", "-q", busybox]);
    assert_eq!(by_reference["status"]["id"], id.as_str());
    let table = crictl.ok(&["inspecti", "-o", "table", &id[..15]]);
    assert!(
        table.starts_with(&format!("ID: {id}\nTag: {busybox}\n")),
        "{table}"
    );

    let fs = crictl.json(&["imagefsinfo"]);
    assert!(fs["status"]["imageFilesystems"].is_array(), "{fs}");

    // rmi by prefix prints the removed tags; then the image is gone.
    let out = crictl.ok(&["rmi", &id[7..17]]);
    assert_eq!(out, format!("Deleted: {busybox}\n"));
    assert_eq!(crictl.ok(&["images", "-q"]), "");
    let err = crictl.fails(&["rmi", busybox]);
    assert!(err.contains(&format!("no such image {busybox}")), "{err}");
    let err = crictl.fails(&["inspecti", busybox]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn config_files_flags_and_environment() {
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-config", env.cri_endpoint());

    // A flag and the environment variable both override the file's endpoint.
    let bogus = crictl.write(
        "bogus.yaml",
        "runtime-endpoint: unix:///nonexistent/x.sock\n",
    );
    let out = crictl.ok(&["-c", &bogus, "-r", env.cri_endpoint(), "version"]);
    assert!(out.starts_with("Version:  "), "{out}");
    let by_env = crictl
        .command(&["-c", &bogus, "version"])
        .env("CONTAINER_RUNTIME_ENDPOINT", env.cri_endpoint())
        .output()
        .expect("running crictl");
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let err = crictl.fails(&["-c", &bogus, "-t", "5s", "version"]);
    assert!(
        err.contains(
            "validate service connection: validate CRI v1 runtime API for endpoint \
             \\\"unix:///nonexistent/x.sock\\\": rpc error: code = Unavailable"
        ),
        "{err}"
    );

    // Bad config files are fatal and named.
    let unknown = crictl.write("unknown.yaml", "bogus-option: 1\n");
    let err = crictl.fails(&["-c", &unknown, "version"]);
    assert!(err.contains(&unknown), "the file is named: {err}");
    assert!(
        err.contains("Config option 'bogus-option' is not valid"),
        "{err}"
    );
    let bad_timeout = crictl.write("timeout.yaml", "timeout: 2s\n");
    let err = crictl.fails(&["-c", &bad_timeout, "version"]);
    assert!(err.contains(&bad_timeout), "{err}");
    assert!(err.contains("parsing config option 'timeout'"), "{err}");
    let broken = crictl.write("broken.yaml", "runtime-endpoint: [unclosed\n");
    let err = crictl.fails(&["-c", &broken, "version"]);
    assert!(
        err.contains("load config file: ") && err.contains(&broken),
        "{err}"
    );
    let missing = crictl
        .dir
        .join("missing.yaml")
        .to_string_lossy()
        .into_owned();
    let err = crictl.fails(&["-c", &missing, "version"]);
    assert!(
        err.contains(&format!(
            "load config file: stat {missing}: no such file or directory"
        )),
        "{err}"
    );

    // A bad timeout flag is a usage error (status 2), as a bad flag is.
    let usage = crictl.run(&["-t", "5", "version"]);
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
    assert!(
        usage.stderr.contains("missing unit in duration"),
        "{}",
        usage.stderr
    );

    // Bad pod configs are named too.
    let no_namespace = crictl.write("pod-bad.json", r#"{"metadata": {"name": "x"}}"#);
    let err = crictl.fails(&["runp", &no_namespace]);
    assert!(
        err.contains("load podSandboxConfig: name or namespace is not in metadata"),
        "{err}"
    );
    let not_json = crictl.write("pod-garbage.json", "{\"metadata\": ");
    let err = crictl.fails(&["runp", &not_json]);
    assert!(
        err.contains(&format!("load podSandboxConfig: {not_json}: ")),
        "{err}"
    );
    let err = crictl.fails(&["runp", "/nonexistent/pod.json"]);
    assert!(
        err.contains("load podSandboxConfig: config at /nonexistent/pod.json not found"),
        "{err}"
    );
}

#[test]
fn streaming_exec_attach_port_forward_and_logs() {
    // exec without --sync, attach and port-forward go through the runtime's
    // streaming server (cri_client::streaming); logs reads the CRI log file.
    let env = TestEnv::require();
    let crictl = Crictl::new("crictl-stream", env.cri_endpoint());
    pull_busybox(&crictl, &env);
    let name = unique_name("crictl-stream");
    let pod_config = crictl.pod_config(&name);
    let pod = crictl.run_pod(&pod_config);
    let container_config = crictl.container_config(
        "talker",
        env.get("BUSYBOX_IMAGE"),
        &[
            "sh",
            "-c",
            "echo hello; httpd -p 8080 -h /var/www; sleep 3600",
        ],
    );
    let container = crictl
        .ok(&["create", &pod.id, &container_config, &pod_config])
        .trim()
        .to_owned();
    crictl.ok(&["start", &container]);
    let prefix = &container[..12];

    // Streamed exec: stdout and stderr apart, the exit code as crictl's status.
    let run = crictl.run(&["exec", prefix, "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), "out\n", "err\n")
    );
    let run = crictl.run(&["exec", prefix, "sh", "-c", "exit 6"]);
    assert_eq!(run.code, Some(6), "stderr: {}", run.stderr);
    // -i: our stdin reaches the command (which stops reading on its own: the v4
    // protocol cannot half-close stdin).
    let run = crictl.run_with_stdin(&["exec", "-i", prefix, "head", "-c", "5"], "abcdefgh");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "abcde"),
        "stderr: {}",
        run.stderr
    );

    // port-forward on a random local port; two requests in a row each get a fresh
    // single-use URL from the runtime.
    let mut forward = crictl
        .command(&["port-forward", &pod.id[..12], ":8080"])
        .spawn()
        .expect("starting crictl port-forward");
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(forward.stdout.as_mut().expect("piped stdout")),
        &mut first_line,
    )
    .expect("reading the Forwarding line");
    let local = first_line
        .trim()
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.split(" -> ").next())
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_owned();
    for _ in 0..2 {
        let resp = node_sdk_e2e::http_get(&local, "/index.html", &[], None)
            .expect("HTTP through the forward");
        assert_eq!(resp.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&resp.body),
            "node-sdk busybox test image\n"
        );
    }
    let _ = forward.kill();
    let _ = forward.wait();

    // logs reads the real CRI log file (bounded wait for the runtime to write it).
    let mut logged = String::new();
    for _ in 0..100 {
        logged = crictl.ok(&["logs", "--tail", "1", prefix]);
        if !logged.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(logged, "hello\n");
    let stamped = crictl.ok(&["logs", "-t", prefix]);
    assert!(
        stamped.ends_with(" hello\n") && stamped.contains('T'),
        "{stamped:?}"
    );

    // The CRI-side checks happen before the seam.
    let err = crictl.fails(&["exec", "-t", prefix, "sh"]);
    assert!(
        err.contains("tty=true must be specified with interactive=true"),
        "{err}"
    );
    let err = crictl.fails(&["logs", "-p", prefix]);
    assert!(
        err.contains("previous terminated container talker not found"),
        "{err}"
    );
    let err = crictl.fails(&["port-forward", &pod.id, "x:80"]);
    assert!(
        err.contains("port forward: Error parsing local port 'x'"),
        "{err}"
    );
    let err = crictl.fails(&["logs", "-s", "both", prefix]);
    assert!(err.contains("invalid stream"), "{err}");
}
