//! `exec`, `attach`, `port-forward`, `logs`: argument checks and the CRI
//! calls here; the streams and the log reading go through
//! `crictl/pending.rs`.

use std::io::Write as _;

use anyhow::{Context as _, anyhow};
use cri_client::v1;
use jiff::Timestamp;

use super::super::cli::{AttachArgs, ExecArgs, LogsArgs, PortForwardArgs, TransportArgs};
use super::super::client::Clients;
use super::super::errors::{CriResultExt as _, Exit, aggregate};
use super::super::filter::{self, ContainerListOptions};
use super::super::log;
use super::super::pending::{
    self, LISTEN_ADDRESS, LogRequest, PortForwardRequest, StreamRequest, parse_port_spec,
    streaming_url,
};
use super::super::units::parse_since;
use super::containers::list_containers;
use super::{print_help, resolve_container, resolve_pod};

/// crictl's `tlsConfigFromFlags` check: no TLS files (plain HTTP), or a
/// certificate and a key (the CA is optional).
fn check_tls(transport: &TransportArgs) -> anyhow::Result<()> {
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let (ca, cert, key) = (
        given(&transport.tls_ca),
        given(&transport.tls_cert),
        given(&transport.tls_key),
    );
    if (ca || cert || key) && !(cert && key) {
        return Err(anyhow!(
            "all two flags --tls-ca and --tls-cert are required for TLS streaming, only --tls-key is optional"
        ))
        .context("get TLS config from flags");
    }
    Ok(())
}

/// crictl's check before streaming with a terminal.
fn check_tty(stdin: bool, tty: bool) -> anyhow::Result<()> {
    if tty && !stdin {
        return Err(anyhow!("tty=true must be specified with interactive=true"));
    }
    Ok(())
}

/// What `exec` runs where.
#[derive(Debug, PartialEq, Eq)]
enum ExecTargets {
    /// One container named on the command line.
    One { id: String, command: Vec<String> },
    /// The containers the filter flags select; the arguments are the command.
    Filtered { command: Vec<String> },
    /// Nothing to run: show the help.
    Usage,
}

fn exec_targets(args: &ExecArgs) -> ExecTargets {
    if args.selects_by_filter() {
        return ExecTargets::Filtered {
            command: args.args.clone(),
        };
    }
    match args.args.split_first() {
        Some((id, command)) if !command.is_empty() => ExecTargets::One {
            id: id.clone(),
            command: command.to_vec(),
        },
        _ => ExecTargets::Usage,
    }
}

/// What crictl prints for an `ExecSync` answer: stdout then stderr, each as
/// Go's `fmt.Println` would (a newline added), both on stdout.
fn exec_sync_output(response: &v1::ExecSyncResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.stdout.len() + response.stderr.len() + 2);
    out.extend_from_slice(&response.stdout);
    out.push(b'\n');
    out.extend_from_slice(&response.stderr);
    out.push(b'\n');
    out
}

/// `crictl exec`.
pub(super) async fn exec(clients: &Clients, args: ExecArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    let (ids, command, show_ids) = match exec_targets(&args) {
        ExecTargets::Usage => {
            print_help("exec");
            return Ok(());
        }
        ExecTargets::One { id, command } => (vec![id], command, false),
        ExecTargets::Filtered { command } => {
            let labels = filter::parse_labels(&args.label).map_err(|e| anyhow!(e))?;
            let pod_id = match args.pod.as_deref().filter(|p| !p.is_empty()) {
                Some(pod) => resolve_pod(clients, pod).await?,
                None => String::new(),
            };
            let opts = ContainerListOptions {
                pod_id,
                name: args.name.clone().unwrap_or_default(),
                image: args.image.clone().unwrap_or_default(),
                state: args.state.clone(),
                labels,
                latest: args.latest,
                last: args.last.unwrap_or(0),
                ..Default::default()
            };
            let ids: Vec<String> = list_containers(clients, &opts)
                .await
                .context("listing containers")?
                .into_iter()
                .map(|c| c.id)
                .collect();
            if ids.is_empty() {
                log::error("No containers found per filter flags");
                print_help("exec");
                return Ok(());
            }
            (ids, command, !args.quiet && !args.parallel)
        }
    };
    if args.ignore_errors && !args.quiet {
        log::warn(
            "The `--ignore-errors` option has been set all errors returned by the command will be ignored.",
        );
    }
    check_tls(&args.transport)?;
    let single = ids.len() == 1;
    let mut errors = Vec::new();
    for given in &ids {
        if show_ids {
            println!("{given}:");
        }
        let outcome = async {
            let id = resolve_container(clients, given).await?;
            if args.sync {
                log::debug(&format!(
                    "ExecSyncRequest: container_id: {id:?} cmd: {command:?} timeout: {}",
                    args.timeout
                ));
                let response = client
                    .exec_sync(&id, command.clone(), args.timeout)
                    .await
                    .cri()
                    .with_context(|| {
                        format!("execing command in container {given} synchronously")
                    })?;
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&exec_sync_output(&response))?;
                stdout.flush()?;
                Ok(response.exit_code)
            } else {
                let request = v1::ExecRequest {
                    container_id: id.clone(),
                    cmd: command.clone(),
                    tty: args.tty,
                    stdin: args.interactive,
                    stdout: true,
                    stderr: !args.tty,
                };
                log::debug(&format!("ExecRequest: {request:?}"));
                let streamed = async {
                    let url = client.exec(request).await.cri()?;
                    log::debug(&format!("Exec URL: {url}"));
                    check_tty(args.interactive, args.tty)?;
                    pending::exec(StreamRequest {
                        url: streaming_url(&url),
                        stdin: args.interactive,
                        tty: args.tty,
                        transport: args.transport.transport.clone(),
                    })
                    .await
                };
                streamed
                    .await
                    .with_context(|| format!("execing command in container {given}"))
            }
        };
        match outcome.await {
            Ok(0) => {}
            Ok(code) if single => {
                errors.push(anyhow::Error::new(Exit {
                    code,
                    message: "non-zero exit code".into(),
                }));
            }
            Ok(code) => errors.push(anyhow!(
                "command in container {given} exited with code {code}"
            )),
            Err(e) => errors.push(e),
        }
    }
    if args.ignore_errors {
        if !errors.is_empty() {
            log::debug(&format!("Ignoring errors: {} error(s)", errors.len()));
        }
        return Ok(());
    }
    aggregate(errors)
}

/// `crictl attach`.
pub(super) async fn attach(clients: &Clients, args: AttachArgs) -> anyhow::Result<()> {
    if args.id.is_empty() {
        return Err(anyhow!("ID cannot be empty"));
    }
    let client = clients.runtime().await?;
    check_tls(&args.transport)?;
    let attached = async {
        let id = resolve_container(clients, &args.id).await?;
        let request = v1::AttachRequest {
            container_id: id,
            stdin: args.stdin,
            tty: args.tty,
            stdout: true,
            stderr: !args.tty,
        };
        log::debug(&format!("AttachRequest: {request:?}"));
        let url = client.attach(request).await.cri()?;
        log::debug(&format!("Attach URL: {url}"));
        check_tty(args.stdin, args.tty)?;
        pending::attach(StreamRequest {
            url: streaming_url(&url),
            stdin: args.stdin,
            tty: args.tty,
            transport: args.transport.transport.clone(),
        })
        .await
    };
    attached.await.context("attaching running container failed")
}

/// `crictl port-forward`.
pub(super) async fn port_forward(clients: &Clients, args: PortForwardArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    check_tls(&args.transport)?;
    let forwarded = async {
        if args.id.is_empty() {
            return Err(anyhow!("ID cannot be empty"));
        }
        let ports = args
            .ports
            .iter()
            .map(|spec| parse_port_spec(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!(e))?;
        let id = resolve_pod(clients, &args.id).await?;
        let remote: Vec<i32> = ports.iter().map(|p| i32::from(p.remote)).collect();
        log::debug(&format!(
            "PortForwardRequest: pod_sandbox_id: {id:?} port: {remote:?}"
        ));
        let url = client.port_forward(&id, remote).await.cri()?;
        log::debug(&format!("PortForward URL: {url}"));
        pending::port_forward(
            PortForwardRequest {
                url: streaming_url(&url),
                listen: LISTEN_ADDRESS,
                ports,
                transport: args.transport.transport.clone(),
                pod_sandbox_id: id,
            },
            client,
        )
        .await
    };
    forwarded.await.context("port forward")
}

/// The log file of the previous attempt: `<dir>/<attempt-1><ext>`, as
/// crictl derives it from the current one.
fn previous_log_path(log_path: &str, attempt: u32, name: &str) -> Result<String, String> {
    if attempt == 0 {
        return Err(format!("previous terminated container {name} not found"));
    }
    let dir_end = log_path.rfind('/').map_or(0, |i| i + 1);
    let extension = log_path.rfind('.').map_or("", |i| &log_path[i..]);
    Ok(format!(
        "{}{}{extension}",
        &log_path[..dir_end],
        attempt - 1
    ))
}

/// The checks of `logs` flags before anything is sent.
fn log_flags(args: &LogsArgs) -> anyhow::Result<(bool, bool)> {
    let (stdout, stderr) = match args.stream.as_deref().unwrap_or_default() {
        "" => (true, true),
        "stdout" => (true, false),
        "stderr" => (false, true),
        other => {
            return Err(anyhow!(
                "invalid stream {other:?}, must be \"stdout\" or \"stderr\""
            ));
        }
    };
    if args.tail.is_some() && args.stream.is_some() {
        return Err(anyhow!("--tail and --stream are mutually exclusive"));
    }
    Ok((stdout, stderr))
}

/// `crictl logs`.
pub(super) async fn logs(clients: &Clients, args: LogsArgs) -> anyhow::Result<()> {
    if args.id.is_empty() {
        return Err(anyhow!("ID cannot be empty"));
    }
    let client = clients.runtime().await?;
    let id = resolve_container(clients, &args.id).await?;
    if args.reopen {
        client
            .reopen_container_log(&id)
            .await
            .cri()
            .context("reopen container logs")?;
        log::info("Container logs reopened");
    }
    let since = args
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_since(s, Timestamp::now()))
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let (stdout, stderr) = log_flags(&args)?;
    let status = client
        .container_status(&id, false)
        .await
        .cri()?
        .status
        .unwrap_or_default();
    if status.log_path.is_empty() {
        return Err(anyhow!("the container has not set log path"));
    }
    let path = if args.previous {
        let metadata = status.metadata.clone().unwrap_or_default();
        previous_log_path(&status.log_path, metadata.attempt, &metadata.name)
            .map_err(|e| anyhow!(e))?
    } else {
        status.log_path.clone()
    };
    let request = LogRequest {
        path,
        container_id: status.id.clone(),
        follow: args.follow,
        tail: args.tail.and_then(|t| u64::try_from(t).ok()),
        limit_bytes: u64::try_from(args.limit_bytes).ok(),
        since,
        timestamps: args.timestamps,
        stdout,
        stderr,
    };
    pending::read_logs(request, client).await
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::crictl::cli::{Cli, Command};

    fn exec_args(args: &[&str]) -> ExecArgs {
        let cli = Cli::try_parse_from(["crictl", "exec"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Exec(exec) => exec,
            other => panic!("{other:?}"),
        }
    }

    fn logs_args(args: &[&str]) -> LogsArgs {
        let cli = Cli::try_parse_from(["crictl", "logs"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Logs(logs) => logs,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_picks_its_containers_from_the_arguments_or_the_filters() {
        assert_eq!(
            exec_targets(&exec_args(&["-s", "abc", "ls", "-l"])),
            ExecTargets::One {
                id: "abc".into(),
                command: vec!["ls".into(), "-l".into()]
            }
        );
        assert_eq!(
            exec_targets(&exec_args(&["-s", "--latest", "ls"])),
            ExecTargets::Filtered {
                command: vec!["ls".into()]
            }
        );
        assert_eq!(exec_targets(&exec_args(&["abc"])), ExecTargets::Usage);
    }

    #[test]
    fn exec_sync_output_is_stdout_then_stderr_each_with_a_newline() {
        let response = v1::ExecSyncResponse {
            stdout: b"hi\n".to_vec(),
            stderr: b"oops".to_vec(),
            exit_code: 3,
        };
        assert_eq!(exec_sync_output(&response), b"hi\n\noops\n");
    }

    #[test]
    fn tls_and_tty_checks() {
        let mut transport = exec_args(&["abc", "ls"]).transport;
        assert!(check_tls(&transport).is_ok());
        transport.tls_ca = Some("/ca.pem".into());
        assert!(check_tls(&transport).is_err());
        transport.tls_cert = Some("/cert.pem".into());
        transport.tls_key = Some("/key.pem".into());
        assert!(check_tls(&transport).is_ok());
        assert!(check_tty(true, true).is_ok());
        assert_eq!(
            check_tty(false, true).unwrap_err().to_string(),
            "tty=true must be specified with interactive=true"
        );
    }

    #[test]
    fn previous_logs_are_the_prior_attempts_file() {
        assert_eq!(
            previous_log_path("/var/log/pods/ns_p_u/app/2.log", 2, "app"),
            Ok("/var/log/pods/ns_p_u/app/1.log".into())
        );
        assert_eq!(
            previous_log_path("/var/log/pods/x/app/0.log", 0, "app"),
            Err("previous terminated container app not found".into())
        );
    }

    #[test]
    fn log_stream_flags() {
        assert_eq!(log_flags(&logs_args(&["abc"])).unwrap(), (true, true));
        assert_eq!(
            log_flags(&logs_args(&["-s", "stderr", "abc"])).unwrap(),
            (false, true)
        );
        assert_eq!(
            log_flags(&logs_args(&["-s", "both", "abc"]))
                .unwrap_err()
                .to_string(),
            "invalid stream \"both\", must be \"stdout\" or \"stderr\""
        );
        assert_eq!(
            log_flags(&logs_args(&["--tail", "3", "-s", "stdout", "abc"]))
                .unwrap_err()
                .to_string(),
            "--tail and --stream are mutually exclusive"
        );
    }
}
