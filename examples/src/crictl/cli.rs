//! The command line, with crictl v1.36's commands, flags, short options and
//! environment variables. Global options go before the command, as in crictl
//! (several commands reuse `-r`, `-t` and `-i` for their own flags).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::units::parse_duration_flag;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration_flag(text)
}

/// client for CRI
#[derive(Debug, Parser)]
#[command(
    name = "crictl",
    version = concat!("v", env!("CARGO_PKG_VERSION"), " (node-sdk)"),
    disable_version_flag = true,
    after_help = "The node SDK's crictl: crictl v1.36's command line over the cri-client crate."
)]
pub(crate) struct Cli {
    /// Location of the client config file. If not specified and the default does not exist,
    /// the program's directory is searched as well
    #[arg(short = 'c', long, env = "CRI_CONFIG_FILE", value_name = "FILE")]
    pub(crate) config: Option<String>,
    /// Endpoint of CRI container runtime service (default: uses in order the first successful
    /// one of the deprecated defaults)
    #[arg(
        short = 'r',
        long,
        env = "CONTAINER_RUNTIME_ENDPOINT",
        value_name = "ENDPOINT"
    )]
    pub(crate) runtime_endpoint: Option<String>,
    /// Endpoint of CRI image manager service (default: uses 'runtime-endpoint' setting)
    #[arg(
        short = 'i',
        long,
        env = "IMAGE_SERVICE_ENDPOINT",
        value_name = "ENDPOINT"
    )]
    pub(crate) image_endpoint: Option<String>,
    /// Timeout of connecting to the server and of each call (e.g. 2s, 20s.). 0 or less is set
    /// to default [default: 2s]
    #[arg(short = 't', long, value_parser = duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub(crate) debug: bool,
    /// Print the version
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub(crate) version: Option<bool>,
    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// crictl's commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Attach to a running container
    Attach(AttachArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Stream the events of containers
    #[command(alias = "event")]
    Events(EventsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Return image filesystem info
    Imagefsinfo(OutputArgs),
    /// List images
    #[command(alias = "image", alias = "img")]
    Images(ImagesArgs),
    /// Display information of the container runtime
    Info(InfoArgs),
    /// Display the status of one or more containers
    Inspect(InspectArgs),
    /// Return the status of one or more images
    Inspecti(InspectiArgs),
    /// Display the status of one or more pods
    Inspectp(InspectpArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Forward local port to a pod
    PortForward(PortForwardArgs),
    /// List pods
    Pods(PodsArgs),
    /// List containers
    Ps(PsArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Remove one or more pods
    Rmp(RmpArgs),
    /// Run a new container inside a sandbox
    Run(RunArgs),
    /// Run a new pod
    Runp(RunpArgs),
    /// Retrieve the container runtime configuration
    RuntimeConfig,
    /// Start one or more created containers
    Start(IdsArgs),
    /// List container(s) resource usage statistics
    Stats(StatsArgs),
    /// List pod statistics
    Statsp(StatspArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Stop one or more running pods
    Stopp(IdsArgs),
    /// Display runtime version information
    Version,
}

/// IDs of containers or pods.
#[derive(Debug, Args)]
pub(crate) struct IdsArgs {
    /// The IDs (or unique prefixes).
    #[arg(value_name = "ID", required = true)]
    pub(crate) ids: Vec<String>,
}

/// `-o` with crictl's formats and the unsupported `--template`.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long)]
    pub(crate) output: Option<String>,
    /// The template string is only used when output is go-template (not supported here)
    #[arg(long)]
    pub(crate) template: Option<String>,
}

/// Registry credentials, as `pull`, `create` and `run` take them.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct AuthArgs {
    /// Use `USERNAME[:PASSWORD]` for accessing the registry
    #[arg(long, value_name = "USERNAME[:PASSWORD]")]
    pub(crate) creds: Option<String>,
    /// Use `AUTH_STRING` for accessing the registry (base64 of `USERNAME:PASSWORD`).
    #[arg(
        long,
        value_name = "AUTH_STRING",
        help = "Use `AUTH_STRING` for accessing the registry. AUTH_STRING is a base64 encoded 'USERNAME[:PASSWORD]'"
    )]
    pub(crate) auth: Option<String>,
    /// Use `USERNAME` for accessing the registry. The password will be requested on the
    /// command line
    #[arg(long, value_name = "USERNAME")]
    pub(crate) username: Option<String>,
}

/// Image pull options of `create` and `run`.
#[derive(Debug, Args)]
pub(crate) struct CreatePullArgs {
    /// Do not pull the image on container creation (overrides pull-image-on-create=true in
    /// config)
    #[arg(long)]
    pub(crate) no_pull: bool,
    /// Pull the image on container creation (overrides pull-image-on-create=false in config)
    #[arg(long)]
    pub(crate) with_pull: bool,
    /// Registry credentials.
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
    /// Seconds to wait for a container create request to complete before cancelling the
    /// request
    #[arg(short = 'T', long, value_parser = duration, value_name = "DURATION")]
    pub(crate) cancel_timeout: Option<Duration>,
    /// Maximum time to be used for pulling the image, disabled if set to 0s
    #[arg(long, visible_alias = "pt", env = "CRICTL_PULL_TIMEOUT", value_parser = duration)]
    pub(crate) pull_timeout: Option<Duration>,
}

/// `create POD container-config pod-config`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The pod sandbox to create the container in.
    #[arg(value_name = "POD")]
    pub(crate) pod: String,
    /// The container config, JSON or YAML.
    #[arg(value_name = "container-config.[json|yaml]")]
    pub(crate) container_config: String,
    /// The pod sandbox config, JSON or YAML.
    #[arg(value_name = "pod-config.[json|yaml]")]
    pub(crate) pod_config: String,
    /// Pull options.
    #[command(flatten)]
    pub(crate) pull: CreatePullArgs,
}

/// `run container-config pod-config`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The container config, JSON or YAML.
    #[arg(value_name = "container-config.[json|yaml]")]
    pub(crate) container_config: String,
    /// The pod sandbox config, JSON or YAML.
    #[arg(value_name = "pod-config.[json|yaml]")]
    pub(crate) pod_config: String,
    /// Runtime handler to use. Available options are defined by the container runtime.
    #[arg(short = 'r', long)]
    pub(crate) runtime: Option<String>,
    /// Pull options.
    #[command(flatten)]
    pub(crate) pull: CreatePullArgs,
}

/// `runp pod-config`.
#[derive(Debug, Args)]
pub(crate) struct RunpArgs {
    /// The pod sandbox config, JSON or YAML.
    #[arg(value_name = "pod-config.[json|yaml]")]
    pub(crate) pod_config: String,
    /// Runtime handler to use. Available options are defined by the container runtime.
    #[arg(short = 'r', long)]
    pub(crate) runtime: Option<String>,
    /// Seconds to wait for a run pod sandbox request to complete before cancelling the request
    #[arg(short = 'T', long, value_parser = duration, value_name = "DURATION")]
    pub(crate) cancel_timeout: Option<Duration>,
}

/// `rmp`.
#[derive(Debug, Args)]
pub(crate) struct RmpArgs {
    /// The pod IDs (or unique prefixes).
    #[arg(value_name = "POD-ID")]
    pub(crate) ids: Vec<String>,
    /// Force removal of the pod sandbox, disregarding if running
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Remove all pods
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
}

/// `stop`.
#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The container IDs (or unique prefixes).
    #[arg(value_name = "CONTAINER-ID")]
    pub(crate) ids: Vec<String>,
    /// Seconds to wait to kill the container after a graceful stop is requested
    #[arg(short = 't', long, default_value_t = 0)]
    pub(crate) timeout: i64,
    /// Stop all running containers
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
}

/// `rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// The container IDs (or unique prefixes).
    #[arg(value_name = "CONTAINER-ID")]
    pub(crate) ids: Vec<String>,
    /// Force removal of the container, disregarding if running
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Preserve the container log file and its rotations
    #[arg(short = 'k', long)]
    pub(crate) keep_logs: bool,
    /// Remove all containers
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
}

/// `pods`.
#[derive(Debug, Args)]
pub(crate) struct PodsArgs {
    /// filter by pod id
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Filter by pod name regular expression pattern
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Filter by pod namespace regular expression pattern
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Filter by pod state
    #[arg(short = 's', long)]
    pub(crate) state: Option<String>,
    /// Filter by key=value label
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Show verbose info for pods
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    /// List only pod IDs
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long, default_value = "table")]
    pub(crate) output: String,
    /// Show the most recently created pod
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// Show last n recently created pods. Set 0 for unlimited
    #[arg(short = 'n', long, default_value_t = 0)]
    pub(crate) last: usize,
    /// Show output without truncating the ID
    #[arg(long)]
    pub(crate) no_trunc: bool,
}

/// `inspectp`.
#[derive(Debug, Args)]
pub(crate) struct InspectpArgs {
    /// The pod IDs (or unique prefixes); without them, the pods the filters select.
    #[arg(value_name = "POD-ID")]
    pub(crate) ids: Vec<String>,
    /// Output format and template.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// Do not show verbose information
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Filter by pod name regular expression pattern
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Filter by pod namespace regular expression pattern
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Filter by pod state
    #[arg(short = 's', long)]
    pub(crate) state: Option<String>,
    /// Filter by key=value label
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Show the most recently created pod
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// Show last n recently created pods. Set 0 for unlimited
    #[arg(short = 'n', long, default_value_t = 0)]
    pub(crate) last: usize,
}

/// Container selection flags shared by `ps` and `inspect`.
#[derive(Debug, Args)]
pub(crate) struct ContainerFilterArgs {
    /// Filter by container name regular expression pattern
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Filter by pod namespace regular expression pattern
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Filter by pod id
    #[arg(short = 'p', long)]
    pub(crate) pod: Option<String>,
    /// Filter by container image
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// Filter by container state
    #[arg(short = 's', long)]
    pub(crate) state: Option<String>,
    /// Filter by key=value label
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Show the most recently created container (includes all states)
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// Show last n recently created containers (includes all states). Set 0 for unlimited.
    #[arg(short = 'n', long, default_value_t = 0)]
    pub(crate) last: usize,
    /// Show all containers
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
}

/// `ps`.
#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Show verbose information for containers
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    /// Filter by container id
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Selection flags.
    #[command(flatten)]
    pub(crate) filter: ContainerFilterArgs,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long, default_value = "table")]
    pub(crate) output: String,
    /// Show output without truncating the ID
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Show image path instead of image id
    #[arg(short = 'r', long)]
    pub(crate) resolve_image_path: bool,
}

/// `inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The container IDs (or unique prefixes); without them, the containers the filters select.
    #[arg(value_name = "CONTAINER-ID")]
    pub(crate) ids: Vec<String>,
    /// Output format and template.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// Do not show verbose information
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Selection flags.
    #[command(flatten)]
    pub(crate) filter: ContainerFilterArgs,
}

/// Streaming transport and TLS flags of `exec`, `attach` and `port-forward`.
#[derive(Debug, Args, Clone)]
pub(crate) struct TransportArgs {
    /// Transport protocol to use, one of: spdy|websocket
    #[arg(short = 'r', long, default_value = "spdy")]
    pub(crate) transport: String,
    /// Server name used in the TLS client to check server certificates against
    #[arg(long, visible_alias = "tls-server-name", default_value = "localhost")]
    pub(crate) tls_sni: String,
    /// Path to the streaming TLS CA certificate
    #[arg(long)]
    pub(crate) tls_ca: Option<String>,
    /// Path to the streaming TLS certificate
    #[arg(long)]
    pub(crate) tls_cert: Option<String>,
    /// Path to the streaming TLS key
    #[arg(long)]
    pub(crate) tls_key: Option<String>,
}

/// `exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Run the command synchronously
    #[arg(short = 's', long)]
    pub(crate) sync: bool,
    /// Timeout in seconds
    #[arg(long, default_value_t = 0)]
    pub(crate) timeout: i64,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Transport and TLS.
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// Exec command for all containers matching this name filter regular expression pattern
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Exec command for all containers matching this pod ID filter
    #[arg(short = 'p', long)]
    pub(crate) pod: Option<String>,
    /// Exec command for all containers matching this container image filter
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// Exec command for all containers matching this container state filter
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Exec command for all containers matching this key=value label filter
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Exec command for the most recently created container
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// Exec command for all last n containers, set to 0 for unlimited
    #[arg(short = 'n', long)]
    pub(crate) last: Option<usize>,
    /// Do not print the container ID if multiple containers are selected
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Ignore errors during command execution
    #[arg(short = 'e', long)]
    pub(crate) ignore_errors: bool,
    /// Run the command in parallel if multiple containers are selected
    #[arg(short = 'x', long)]
    pub(crate) parallel: bool,
    /// [CONTAINER-ID] COMMAND [ARG...]; the container ID is left out when a filter flag
    /// selects the containers.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) args: Vec<String>,
}

impl ExecArgs {
    /// Whether a filter flag selects the containers (then every positional
    /// argument is the command).
    pub(crate) fn selects_by_filter(&self) -> bool {
        self.name.is_some()
            || self.pod.is_some()
            || self.image.is_some()
            || self.state.is_some()
            || !self.label.is_empty()
            || self.latest
            || self.last.is_some()
    }
}

/// `attach`.
#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The container ID (or a unique prefix).
    #[arg(value_name = "CONTAINER-ID")]
    pub(crate) id: String,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub(crate) stdin: bool,
    /// Transport and TLS.
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
}

/// `port-forward`.
#[derive(Debug, Args)]
pub(crate) struct PortForwardArgs {
    /// The pod ID (or a unique prefix).
    #[arg(value_name = "POD-ID")]
    pub(crate) id: String,
    /// The ports, `[LOCAL_PORT:]REMOTE_PORT`.
    #[arg(value_name = "[LOCAL_PORT:]REMOTE_PORT", required = true)]
    pub(crate) ports: Vec<String>,
    /// Transport and TLS.
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
}

/// `logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The container ID (or a unique prefix).
    #[arg(value_name = "CONTAINER-ID")]
    pub(crate) id: String,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Print the logs for the previous instance of the container in a pod if it exists
    #[arg(short = 'p', long)]
    pub(crate) previous: bool,
    /// Reopen the container logs for the provided container
    #[arg(short = 'r', long)]
    pub(crate) reopen: bool,
    /// Number of lines to show from the end of the logs. Defaults to all
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) tail: Option<i64>,
    /// Maximum bytes of logs to return. Defaults to no limit
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub(crate) limit_bytes: i64,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37) or relative (e.g. 42m for 42
    /// minutes)
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub(crate) timestamps: bool,
    /// Show specified stream (stdout or stderr). Defaults to both.
    #[arg(short = 's', long)]
    pub(crate) stream: Option<String>,
}

/// `pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image, `NAME[:TAG|@DIGEST]`.
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub(crate) image: String,
    /// Use `USERNAME[:PASSWORD]` for accessing the registry
    #[arg(long, env = "CRICTL_CREDS", value_name = "USERNAME[:PASSWORD]")]
    pub(crate) creds: Option<String>,
    /// Use `AUTH_STRING` for accessing the registry (base64 of `USERNAME:PASSWORD`).
    #[arg(
        long,
        env = "CRICTL_AUTH",
        value_name = "AUTH_STRING",
        help = "Use `AUTH_STRING` for accessing the registry. AUTH_STRING is a base64 encoded 'USERNAME[:PASSWORD]'"
    )]
    pub(crate) auth: Option<String>,
    /// Use `USERNAME` for accessing the registry. The password will be requested on the
    /// command line (or read from stdin when it is not a terminal)
    #[arg(short = 'u', long, value_name = "USERNAME")]
    pub(crate) username: Option<String>,
    /// The password for --username, instead of the prompt (not in crictl)
    #[arg(short = 'p', long, value_name = "PASSWORD", requires = "username")]
    pub(crate) password: Option<String>,
    /// Use `pod-config.[json|yaml]` to override the pull config
    #[arg(long, value_name = "pod-config.[json|yaml]")]
    pub(crate) pod_config: Option<String>,
    /// Annotation to be set on the pulled image
    #[arg(short = 'a', long)]
    pub(crate) annotation: Vec<String>,
    /// Maximum time to be used for pulling the image, disabled if set to 0s
    #[arg(long, visible_alias = "pt", env = "CRICTL_PULL_TIMEOUT", value_parser = duration)]
    pub(crate) pull_timeout: Option<Duration>,
}

/// `images`.
#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// Only images matching `REPOSITORY[:TAG]`.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub(crate) reference: Option<String>,
    /// Show verbose info for images
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Filter output based on provided conditions (dangling=true|false, reference=REGEX,
    /// before=IMAGE, since=IMAGE). Multiple filters can be combined together.
    #[arg(short = 'f', long)]
    pub(crate) filter: Vec<String>,
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long)]
    pub(crate) output: Option<String>,
    /// Show digests
    #[arg(long)]
    pub(crate) digests: bool,
    /// Show output without truncating the ID
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Show whether the image is pinned or not
    #[arg(long)]
    pub(crate) pinned: bool,
}

/// `inspecti`.
#[derive(Debug, Args)]
pub(crate) struct InspectiArgs {
    /// The image IDs (or unique prefixes) or references; without them, the images the
    /// filters select.
    #[arg(value_name = "IMAGE-ID")]
    pub(crate) ids: Vec<String>,
    /// Output format and template.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// Do not show verbose information
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Filter by image name
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Filter output based on provided conditions.
    #[arg(short = 'f', long)]
    pub(crate) filter: Vec<String>,
}

/// `rmi`.
#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// The image IDs (or unique prefixes) or references.
    #[arg(value_name = "IMAGE-ID")]
    pub(crate) ids: Vec<String>,
    /// Remove all images
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
    /// Remove all unused images
    #[arg(short = 'q', long)]
    pub(crate) prune: bool,
}

/// `info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Output format, One of: json|yaml
    #[arg(short = 'o', long, default_value = "json")]
    pub(crate) output: String,
    /// Do not show verbose information
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// The template string is only used when output is go-template (not supported here)
    #[arg(long)]
    pub(crate) template: Option<String>,
}

/// `events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Output format, One of: json|yaml
    #[arg(short = 'o', long, default_value = "json")]
    pub(crate) output: String,
    /// The template string is only used when output is go-template (not supported here)
    #[arg(long)]
    pub(crate) template: Option<String>,
}

/// `stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// A container ID (or unique prefix), like --id.
    #[arg(value_name = "ID")]
    pub(crate) id_arg: Option<String>,
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
    /// Filter by container id
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Filter by pod id
    #[arg(short = 'p', long)]
    pub(crate) pod: Option<String>,
    /// Filter by key=value label
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long)]
    pub(crate) output: Option<String>,
    /// Sample duration for CPU usage in seconds
    #[arg(short = 's', long, default_value_t = 1)]
    pub(crate) seconds: u64,
    /// Watch pod resources
    #[arg(short = 'w', long)]
    pub(crate) watch: bool,
}

/// `statsp`.
#[derive(Debug, Args)]
pub(crate) struct StatspArgs {
    /// A pod ID (or unique prefix), like --id.
    #[arg(value_name = "ID")]
    pub(crate) id_arg: Option<String>,
    /// Filter by pod id
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Filter by key=value label
    #[arg(long)]
    pub(crate) label: Vec<String>,
    /// Output format, One of: json|yaml|table
    #[arg(short = 'o', long)]
    pub(crate) output: Option<String>,
    /// Sample duration for CPU usage in seconds
    #[arg(short = 's', long, default_value_t = 1)]
    pub(crate) seconds: u64,
    /// Watch pod resources
    #[arg(short = 'w', long)]
    pub(crate) watch: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("crictl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_the_command() {
        let cli = parse(&["-r", "unix:///x.sock", "-t", "5s", "-D", "pods"]);
        assert_eq!(cli.runtime_endpoint.as_deref(), Some("unix:///x.sock"));
        assert_eq!(cli.timeout, Some(Duration::from_secs(5)));
        assert!(cli.debug);
        assert!(matches!(cli.command, Command::Pods(_)));
        let err = Cli::try_parse_from(["crictl", "-t", "5", "pods"]).unwrap_err();
        assert!(err.to_string().contains("missing unit"), "{err}");
    }

    #[test]
    fn exec_keeps_the_command_and_its_flags_together() {
        let cli = parse(&[
            "exec",
            "-s",
            "--timeout",
            "3",
            "abc",
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        let Command::Exec(exec) = cli.command else {
            panic!()
        };
        assert!(exec.sync);
        assert_eq!(exec.timeout, 3);
        assert_eq!(exec.args, ["abc", "sh", "-c", "echo hi; exit 3"]);
        assert!(!exec.selects_by_filter());
        let cli = parse(&["exec", "-it", "abc", "sh"]);
        let Command::Exec(exec) = cli.command else {
            panic!()
        };
        assert!(exec.tty && exec.interactive);
        let cli = parse(&["exec", "--name", "app", "-s", "ls", "-l"]);
        let Command::Exec(exec) = cli.command else {
            panic!()
        };
        assert!(exec.selects_by_filter());
        assert_eq!(exec.args, ["ls", "-l"]);
    }

    #[test]
    fn combined_short_flags_and_aliases() {
        let cli = parse(&["ps", "-aq", "--name", "^app$", "-p", "abc"]);
        let Command::Ps(ps) = cli.command else {
            panic!()
        };
        assert!(ps.filter.all && ps.quiet);
        assert_eq!(ps.filter.pod.as_deref(), Some("abc"));
        assert!(matches!(parse(&["img"]).command, Command::Images(_)));
        assert!(matches!(
            parse(&["image", "-q"]).command,
            Command::Images(_)
        ));
        assert!(matches!(parse(&["event"]).command, Command::Events(_)));
        let cli = parse(&["pull", "--pt", "30s", "-u", "me", "-p", "pw", "busybox"]);
        let Command::Pull(pull) = cli.command else {
            panic!()
        };
        assert_eq!(pull.pull_timeout, Some(Duration::from_secs(30)));
        assert_eq!(pull.username.as_deref(), Some("me"));
        assert_eq!(pull.password.as_deref(), Some("pw"));
        let cli = parse(&["logs", "--tail", "5", "-t", "abc"]);
        let Command::Logs(logs) = cli.command else {
            panic!()
        };
        assert_eq!(logs.tail, Some(5));
        assert!(logs.timestamps);
        assert_eq!(logs.limit_bytes, -1);
    }

    #[test]
    fn required_arguments() {
        assert!(Cli::try_parse_from(["crictl", "runp"]).is_err());
        assert!(Cli::try_parse_from(["crictl", "create", "pod", "c.json"]).is_err());
        assert!(Cli::try_parse_from(["crictl", "start"]).is_err());
        assert!(Cli::try_parse_from(["crictl", "port-forward", "pod"]).is_err());
    }
}
