//! `pull`, `images`, `inspecti`, `rmi`, `imagefsinfo`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use cri_client::CriClient;
use cri_client::v1::{self, AuthConfig};

use super::super::client::Clients;
use super::super::errors::{CriResultExt as _, aggregate};
use super::super::files::load_pod_config;
use super::super::filter::parse_labels;
use super::super::json::{self, StatusData};
use super::super::log;
use super::super::table::Table;
use super::super::units::{human_size, human_size_with_precision, truncate_id};
use super::{check_format, print_help, resolve_image, with_context};
use crate::crictl::cli::{AuthArgs, ImagesArgs, InspectiArgs, OutputArgs, PullArgs, RmiArgs};

/// crictl's `parseCreds`: `USERNAME[:PASSWORD]`.
fn parse_creds(creds: &str) -> Result<(String, String), String> {
    if creds.is_empty() {
        return Err("credentials can't be empty".into());
    }
    match creds.split_once(':') {
        None => Ok((creds.to_owned(), String::new())),
        Some(("", _)) => Err("username can't be empty".into()),
        Some((user, password)) => Ok((user.to_owned(), password.to_owned())),
    }
}

/// The credentials of `--username` (password given or prompted), `--creds`
/// or `--auth` (crictl's `getAuth`).
pub(super) fn get_auth(
    args: &AuthArgs,
    password: Option<&str>,
) -> anyhow::Result<Option<AuthConfig>> {
    auth_config(args, password, prompt_password)
}

fn auth_config(
    args: &AuthArgs,
    password: Option<&str>,
    prompt: impl FnOnce() -> std::io::Result<String>,
) -> anyhow::Result<Option<AuthConfig>> {
    if let Some(username) = args.username.as_deref().filter(|u| !u.is_empty()) {
        let password = match password {
            Some(p) => p.to_owned(),
            None => prompt()?,
        };
        return Ok(Some(AuthConfig {
            username: username.to_owned(),
            password,
            ..Default::default()
        }));
    }
    let creds = args.creds.as_deref().filter(|c| !c.is_empty());
    let auth = args.auth.as_deref().filter(|a| !a.is_empty());
    match (creds, auth) {
        (Some(_), Some(_)) => Err(anyhow!("both `--creds` and `--auth` are specified")),
        (Some(creds), None) => {
            let (username, password) = parse_creds(creds).map_err(|e| anyhow!(e))?;
            Ok(Some(AuthConfig {
                username,
                password,
                ..Default::default()
            }))
        }
        (None, Some(auth)) => Ok(Some(AuthConfig {
            auth: auth.to_owned(),
            ..Default::default()
        })),
        (None, None) => Ok(None),
    }
}

/// `Enter Password:`, read without echo from a terminal, or a line of stdin
/// when it is not one.
fn prompt_password() -> std::io::Result<String> {
    print!("Enter Password:");
    std::io::stdout().flush()?;
    let password = if std::io::stdin().is_terminal() {
        rpassword::read_password()?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    println!();
    Ok(password)
}

/// crictl's `PullImageWithSandbox`: returns the image ref.
pub(super) async fn pull_with_sandbox(
    client: &CriClient,
    image: &str,
    auth: Option<AuthConfig>,
    sandbox: Option<v1::PodSandboxConfig>,
    annotations: HashMap<String, String>,
    timeout: Option<Duration>,
) -> anyhow::Result<String> {
    let spec = v1::ImageSpec {
        image: image.to_owned(),
        annotations,
        ..Default::default()
    };
    log::debug(&format!(
        "PullImageRequest: image: {spec:?} auth set: {} sandbox_config: {sandbox:?}",
        auth.is_some()
    ));
    let client = match timeout.filter(|t| !t.is_zero()) {
        Some(t) => {
            log::debug(&format!("Using pull context with timeout of {t:?}"));
            client.with_timeout(t)
        }
        None => client.clone(),
    };
    let image_ref = client.pull_image(spec, auth, sandbox).await.cri()?;
    log::debug(&format!("PullImageResponse: image_ref: {image_ref:?}"));
    Ok(image_ref)
}

/// `crictl pull`.
pub(super) async fn pull(clients: &Clients, args: PullArgs) -> anyhow::Result<()> {
    if args.image.is_empty() {
        return Err(anyhow!("image name cannot be empty"));
    }
    let client = clients.image().await?;
    let auth_args = AuthArgs {
        creds: args.creds.clone(),
        auth: args.auth.clone(),
        username: args.username.clone(),
    };
    let auth = get_auth(&auth_args, args.password.as_deref())?;
    let sandbox = match &args.pod_config {
        Some(path) => Some(with_context(
            load_pod_config(path),
            "load podSandboxConfig",
        )?),
        None => None,
    };
    let annotations = parse_labels(&args.annotation).map_err(|e| anyhow!(e))?;
    let image_ref = pull_with_sandbox(
        client,
        &args.image,
        auth,
        sandbox,
        annotations,
        args.pull_timeout,
    )
    .await
    .context("pulling image")?;
    println!("Image is up to date for {image_ref}");
    Ok(())
}

/// Orders images by first repo tag, then first repo digest, then ID
/// (crictl's `imageByRef`).
fn sort_images(images: &mut [v1::Image]) {
    images.sort_by(|a, b| {
        if let (Some(x), Some(y)) = (a.repo_tags.first(), b.repo_tags.first()) {
            return x.cmp(y);
        }
        if let (Some(x), Some(y)) = (a.repo_digests.first(), b.repo_digests.first()) {
            return x.cmp(y);
        }
        a.id.cmp(&b.id)
    });
}

/// crictl's `normalizeRepoDigest`: the repository and digest of the first
/// repo digest, `<none>` for both without one.
fn normalize_repo_digest(repo_digests: &[String]) -> (String, String) {
    let Some(first) = repo_digests.first() else {
        return ("<none>".into(), "<none>".into());
    };
    let parts: Vec<&str> = first.split('@').collect();
    match parts.as_slice() {
        [repo, digest] => ((*repo).to_owned(), (*digest).to_owned()),
        _ => ("errorName".into(), "errorRepoDigest".into()),
    }
}

/// crictl's `normalizeRepoTagPair`: `(repository, tag)` per repo tag, or the
/// digest's repository with tag `<none>` when untagged.
fn normalize_repo_tag_pairs(repo_tags: &[String], image_name: &str) -> Vec<(String, String)> {
    if repo_tags.is_empty() {
        return vec![(image_name.to_owned(), "<none>".to_owned())];
    }
    repo_tags
        .iter()
        .map(|tag| match tag.rfind(':') {
            None => ("errorRepoTag".to_owned(), "errorRepoTag".to_owned()),
            Some(i) => {
                let name = if &tag[..i] == "<none>" {
                    image_name
                } else {
                    &tag[..i]
                };
                (name.to_owned(), tag[i + 1..].to_owned())
            }
        })
        .collect()
}

/// `--filter` conditions: `dangling=`, `reference=`, `before=`, `since=`.
fn filter_images(mut images: Vec<v1::Image>, filters: &[String]) -> Result<Vec<v1::Image>, String> {
    for filter in filters {
        if let Some(value) = filter.strip_prefix("before=") {
            images.reverse();
            images = before_or_since(value, images);
            images.reverse();
        } else if let Some(value) = filter.strip_prefix("since=") {
            images = before_or_since(value, images);
        } else if let Some(value) = filter.strip_prefix("dangling=") {
            images.retain(|i| match value {
                "true" => i.repo_tags.is_empty(),
                "false" => !i.repo_tags.is_empty(),
                _ => false,
            });
        } else if let Some(value) = filter.strip_prefix("reference=") {
            let re = regex::Regex::new(value).map_err(|e| e.to_string())?;
            images.retain(|i| {
                let (name, _) = normalize_repo_digest(&i.repo_digests);
                re.is_match(&name) || name == value
            });
        } else {
            return Err(format!("unknown filter flag: {filter}"));
        }
    }
    Ok(images)
}

/// The images up to (not including) the one `value` names, in list order
/// (crictl's `filterByBeforeSince`).
fn before_or_since(value: &str, images: Vec<v1::Image>) -> Vec<v1::Image> {
    let mut kept = Vec::new();
    for image in images {
        let by_tag = value.contains(':') && !value.contains('@');
        let by_id = !value.contains(':') && !value.contains('@');
        let by_digest = value.contains(':') && value.contains('@');
        if by_tag {
            let (name, _) = normalize_repo_digest(&image.repo_digests);
            let (repo, tag) = normalize_repo_tag_pairs(&image.repo_tags, &name)
                .into_iter()
                .next()
                .unwrap_or_default();
            if format!("{repo}:{tag}") == value {
                break;
            }
        }
        if by_id && image.id.starts_with(value) {
            break;
        }
        if by_digest
            && image
                .repo_digests
                .first()
                .is_some_and(|d| d.starts_with(value))
        {
            break;
        }
        if by_tag || by_id || (by_digest && !image.repo_digests.is_empty()) {
            kept.push(image);
        }
    }
    kept
}

/// crictl's `ListImages`: the name filter on the runtime, then sorted and
/// the `--filter` conditions.
async fn list_images(
    client: &CriClient,
    name: &str,
    filters: &[String],
) -> anyhow::Result<Vec<v1::Image>> {
    let filter = v1::ImageFilter {
        image: Some(v1::ImageSpec {
            image: name.to_owned(),
            ..Default::default()
        }),
    };
    log::debug(&format!("ListImagesRequest: filter: {filter:?}"));
    let mut images = client.list_images(Some(filter)).await.cri()?;
    sort_images(&mut images);
    if !filters.is_empty() && !images.is_empty() {
        images = filter_images(images, filters)
            .map_err(|e| anyhow!(e))
            .context("filter images")?;
    }
    Ok(images)
}

/// How `images` shows the list.
#[derive(Debug, Clone, Copy, Default)]
struct ImagesView {
    quiet: bool,
    verbose: bool,
    digests: bool,
    no_trunc: bool,
    pinned: bool,
}

/// `crictl images`.
pub(super) async fn images(clients: &Clients, args: ImagesArgs) -> anyhow::Result<()> {
    let client = clients.image().await?;
    let images = list_images(
        client,
        args.reference.as_deref().unwrap_or_default(),
        &args.filter,
    )
    .await
    .context("listing images")?;
    let text = match args.output.as_deref() {
        Some("json") => {
            format!(
                "{}\n",
                json::message_json(&v1::ListImagesResponse { images })?
            )
        }
        Some("yaml") => {
            format!(
                "{}\n",
                json::message_yaml(&v1::ListImagesResponse { images })?
            )
        }
        // crictl prints the table for any other value.
        _ => images_text(
            &images,
            ImagesView {
                quiet: args.quiet,
                verbose: args.verbose,
                digests: args.digests,
                no_trunc: args.no_trunc,
                pinned: args.pinned,
            },
        ),
    };
    print!("{text}");
    Ok(())
}

fn images_text(images: &[v1::Image], view: ImagesView) -> String {
    let mut table = Table::new();
    let mut out = String::new();
    if !view.verbose && !view.quiet {
        let mut header = vec!["IMAGE", "TAG"];
        if view.digests {
            header.push("DIGEST");
        }
        header.extend(["IMAGE ID", "SIZE"]);
        if view.pinned {
            header.push("PINNED");
        }
        table.row(header);
    }
    for image in images {
        if view.quiet {
            let _ = writeln!(out, "{}", image.id);
            continue;
        }
        if !view.verbose {
            let (name, digest) = normalize_repo_digest(&image.repo_digests);
            #[allow(clippy::cast_precision_loss)]
            let size = human_size_with_precision(image.size as f64, 3);
            let (id, digest) = if view.no_trunc {
                (image.id.as_str(), digest.as_str())
            } else {
                (
                    truncate_id(&image.id, "sha256:"),
                    truncate_id(&digest, "sha256:"),
                )
            };
            for (repo, tag) in normalize_repo_tag_pairs(&image.repo_tags, &name) {
                let mut row = vec![repo, tag];
                if view.digests {
                    row.push(digest.to_owned());
                }
                row.extend([id.to_owned(), size.clone()]);
                if view.pinned {
                    row.push(image.pinned.to_string());
                }
                table.row(row);
            }
            continue;
        }
        let _ = writeln!(out, "ID: {}", image.id);
        for tag in &image.repo_tags {
            let _ = writeln!(out, "RepoTags: {tag}");
        }
        for digest in &image.repo_digests {
            let _ = writeln!(out, "RepoDigests: {digest}");
        }
        if image.size != 0 {
            let _ = writeln!(out, "Size: {}", image.size);
        }
        if let Some(uid) = &image.uid {
            let _ = writeln!(out, "Uid: value:{}", uid.value);
        }
        if !image.username.is_empty() {
            let _ = writeln!(out, "Username: {}", image.username);
        }
        if image.pinned {
            let _ = writeln!(out, "Pinned: true");
        }
        out.push('\n');
    }
    out.push_str(&table.render());
    out
}

/// `crictl inspecti`.
pub(super) async fn inspecti(clients: &Clients, args: InspectiArgs) -> anyhow::Result<()> {
    let client = clients.image().await?;
    let verbose = !args.quiet;
    let OutputArgs { output, .. } = args.output;
    let output = output.unwrap_or_else(|| "json".into());
    if output == "go-template" {
        check_format(&output, &[])?;
    }
    let mut ids = Vec::new();
    for given in &args.ids {
        ids.push((given.clone(), resolve_image(clients, given).await?));
    }
    if ids.is_empty() {
        ids = list_images(
            client,
            args.name.as_deref().unwrap_or_default(),
            &args.filter,
        )
        .await
        .context("listing images")?
        .into_iter()
        .map(|i| (i.id.clone(), i.id))
        .collect();
    }
    if ids.is_empty() {
        log::error("No IDs provided or nothing found per filter");
        print_help("inspecti");
        return Ok(());
    }
    let mut statuses = Vec::new();
    let mut tables = String::new();
    for (given, id) in &ids {
        log::debug(&format!(
            "ImageStatusRequest: image: {id:?} verbose: {verbose}"
        ));
        let response = client
            .image_status(image_spec(id), verbose)
            .await
            .cri()
            .with_context(|| format!("image status for {given:?} request"))?;
        log::debug(&format!("ImageStatusResponse: {response:?}"));
        let Some(image) = &response.image else {
            return Err(anyhow!("no such image {given:?} present"));
        };
        if output == "table" {
            tables.push_str(&image_status_table(image, &response.info, verbose));
            continue;
        }
        let value = json::to_value(image)
            .with_context(|| format!("marshal status to JSON for {given:?}"))?;
        let mut info: Vec<(String, String)> = response
            .info
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        info.sort();
        statuses.push(StatusData {
            status: Some(value),
            info,
            ..Default::default()
        });
    }
    if output == "table" {
        print!("{tables}");
        return Ok(());
    }
    let text = json::status_output(statuses, &output).map_err(|e| anyhow!(e))?;
    print!("{text}");
    Ok(())
}

fn image_status_table(image: &v1::Image, info: &HashMap<String, String>, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ID: {}", image.id);
    for tag in &image.repo_tags {
        let _ = writeln!(out, "Tag: {tag}");
    }
    for digest in &image.repo_digests {
        let _ = writeln!(out, "Digest: {digest}");
    }
    #[allow(clippy::cast_precision_loss)]
    let size = human_size_with_precision(image.size as f64, 3);
    let _ = writeln!(out, "Size: {size}");
    if verbose {
        let _ = writeln!(out, "Info: {}", super::pods::go_map_text(info));
    }
    out
}

fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// `crictl rmi`.
pub(super) async fn rmi(clients: &Clients, args: RmiArgs) -> anyhow::Result<()> {
    let client = clients.image().await?;
    // given text -> remove? (false: in use, on --prune)
    let mut ids: BTreeMap<String, bool> = BTreeMap::new();
    for given in &args.ids {
        log::debug(&format!("User specified image to be removed: {given}"));
        ids.insert(given.clone(), true);
    }
    if args.all || args.prune {
        for image in client.list_images(None).await.cri()? {
            if args.prune && image.pinned {
                log::debug(&format!("Excluding pinned container image: {}", image.id));
                continue;
            }
            log::debug(&format!(
                "Adding container image to be removed: {}",
                image.id
            ));
            ids.insert(image.id, true);
        }
    }
    if args.prune {
        let runtime = clients.runtime().await?;
        for container in runtime.list_containers(None).await.cri()? {
            let image = container.image.map(|i| i.image).unwrap_or_default();
            match client.image_status(image_spec(&image), false).await {
                Ok(status) => {
                    if let Some(image) = status.image {
                        log::debug(&format!("Excluding in use container image: {}", image.id));
                        ids.insert(image.id, false);
                    }
                }
                Err(e) => log::error(&format!("image status request for {image:?} failed: {e}")),
            }
        }
    }
    if ids.is_empty() {
        if args.all || args.prune {
            log::info("No images to remove");
        } else {
            print_help("rmi");
        }
        return Ok(());
    }
    let mut errors = Vec::new();
    for (given, remove) in &ids {
        if !remove {
            continue;
        }
        if let Err(e) = remove_image(clients, client, given, args.prune).await {
            errors.push(e);
        }
    }
    aggregate(errors)
}

async fn remove_image(
    clients: &Clients,
    client: &CriClient,
    given: &str,
    prune: bool,
) -> anyhow::Result<()> {
    let id = resolve_image(clients, given).await?;
    let status = client
        .image_status(image_spec(&id), false)
        .await
        .cri()
        .with_context(|| format!("image status request for {given:?} failed"))?;
    let Some(image) = status.image else {
        return Err(anyhow!("no such image {given}"));
    };
    log::debug(&format!("RemoveImageRequest: image: {id:?}"));
    if let Err(e) = client.remove_image(image_spec(&id)).await.cri() {
        // Races with other removals are expected on prune.
        if prune {
            return Ok(());
        }
        return Err(e).with_context(|| format!("error of removing image {given:?}"));
    }
    let removed = if image.repo_tags.is_empty() {
        &image.repo_digests
    } else {
        &image.repo_tags
    };
    for name in removed {
        println!("Deleted: {name}");
    }
    Ok(())
}

/// `crictl imagefsinfo`.
pub(super) async fn imagefsinfo(clients: &Clients, args: OutputArgs) -> anyhow::Result<()> {
    let client = clients.image().await?;
    let output = args.output.unwrap_or_else(|| "json".into());
    if output == "go-template" {
        check_format(&output, &[])?;
    }
    let response = client
        .image_fs_info()
        .await
        .cri()
        .context("image filesystem info request")?;
    log::debug(&format!("ImageFsInfoResponse: {response:?}"));
    if output == "table" {
        print!("{}", image_fs_table(&response));
        return Ok(());
    }
    let value = json::to_value(&response).context("marshal filesystem info to json")?;
    let text = json::status_output(
        vec![StatusData {
            status: Some(value),
            ..Default::default()
        }],
        &output,
    )
    .map_err(|e| anyhow!(e))?;
    print!("{text}");
    Ok(())
}

fn image_fs_table(response: &v1::ImageFsInfoResponse) -> String {
    let mut out = String::new();
    for (label, filesystems) in [
        ("Container", &response.container_filesystems),
        ("Image", &response.image_filesystems),
    ] {
        let _ = writeln!(out, "{label} Filesystem ");
        for (i, fs) in filesystems.iter().enumerate() {
            let _ = writeln!(out, "TimeStamp[{i}]: {}", fs.timestamp);
            #[allow(clippy::cast_precision_loss)]
            let used = fs.used_bytes.as_ref().map_or(0, |v| v.value) as f64;
            let _ = writeln!(out, "Disk[{i}]: {}", human_size(used));
            let inodes = fs.inodes_used.as_ref().map_or(0, |v| v.value);
            let _ = writeln!(out, "Inodes[{i}]: {inodes}");
            let mountpoint = fs.fs_id.as_ref().map_or("", |id| id.mountpoint.as_str());
            let _ = writeln!(out, "Mountpoint[{i}]: {mountpoint}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:85262e6d58038868b77b8891778aab7a872ed0b32ee1d0439622ad072eea56f1";

    fn image(tags: &[&str], digests: &[&str], id: &str, size: u64) -> v1::Image {
        v1::Image {
            id: id.into(),
            repo_tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            repo_digests: digests.iter().map(|s| (*s).to_owned()).collect(),
            size,
            ..Default::default()
        }
    }

    #[test]
    fn creds_parse_like_crictl() {
        assert_eq!(parse_creds("me:pw:x"), Ok(("me".into(), "pw:x".into())));
        assert_eq!(parse_creds("me"), Ok(("me".into(), String::new())));
        assert_eq!(parse_creds(""), Err("credentials can't be empty".into()));
        assert_eq!(parse_creds(":pw"), Err("username can't be empty".into()));
    }

    #[test]
    fn auth_comes_from_username_creds_or_auth() {
        let never = || -> std::io::Result<String> { panic!("no prompt expected") };
        let creds = AuthArgs {
            creds: Some("me:pw".into()),
            ..Default::default()
        };
        let auth = auth_config(&creds, None, never).unwrap().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("me", "pw")
        );
        let encoded = AuthArgs {
            auth: Some("bWU6cHc=".into()),
            ..Default::default()
        };
        assert_eq!(
            auth_config(&encoded, None, never).unwrap().unwrap().auth,
            "bWU6cHc="
        );
        let both = AuthArgs {
            creds: Some("a:b".into()),
            auth: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            auth_config(&both, None, never).unwrap_err().to_string(),
            "both `--creds` and `--auth` are specified"
        );
        let user = AuthArgs {
            username: Some("me".into()),
            ..Default::default()
        };
        let prompted = auth_config(&user, None, || Ok("typed".into()))
            .unwrap()
            .unwrap();
        assert_eq!(prompted.password, "typed");
        let given = auth_config(&user, Some("flag"), never).unwrap().unwrap();
        assert_eq!(given.password, "flag");
        assert!(
            auth_config(&AuthArgs::default(), None, never)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn repo_tags_and_digests_normalize_like_crictl() {
        assert_eq!(
            normalize_repo_digest(&["127.0.0.1:5000/busybox@sha256:abc".into()]),
            ("127.0.0.1:5000/busybox".into(), "sha256:abc".into())
        );
        assert_eq!(
            normalize_repo_digest(&[]),
            ("<none>".into(), "<none>".into())
        );
        assert_eq!(
            normalize_repo_tag_pairs(&["127.0.0.1:5000/busybox:1.35".into()], "x"),
            [("127.0.0.1:5000/busybox".to_owned(), "1.35".to_owned())]
        );
        assert_eq!(
            normalize_repo_tag_pairs(&[], "repo"),
            [("repo".to_owned(), "<none>".to_owned())]
        );
        assert_eq!(
            normalize_repo_tag_pairs(&["<none>:<none>".into()], "repo"),
            [("repo".to_owned(), "<none>".to_owned())]
        );
    }

    #[test]
    fn the_images_table() {
        let images = [image(
            &["127.0.0.1:5000/node-sdk/busybox:1.35"],
            &[
                "127.0.0.1:5000/node-sdk/busybox@sha256:1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff",
            ],
            ID,
            1_234_567,
        )];
        let text = images_text(&images, ImagesView::default());
        assert_eq!(
            text,
            "IMAGE                             TAG                 IMAGE ID            SIZE\n\
             127.0.0.1:5000/node-sdk/busybox   1.35                85262e6d58038       1.23MB\n"
        );
        let with_digest = images_text(
            &images,
            ImagesView {
                digests: true,
                pinned: true,
                ..Default::default()
            },
        );
        assert!(with_digest.starts_with("IMAGE                             TAG                 DIGEST              IMAGE ID            SIZE                PINNED\n"), "{with_digest}");
        assert!(
            with_digest.contains("1111222233334       85262e6d58038"),
            "{with_digest}"
        );
        assert!(with_digest.trim_end().ends_with("false"));
        assert_eq!(
            images_text(
                &images,
                ImagesView {
                    quiet: true,
                    ..Default::default()
                }
            ),
            format!("{ID}\n")
        );
        let verbose = images_text(
            &images,
            ImagesView {
                verbose: true,
                ..Default::default()
            },
        );
        assert!(
            verbose.starts_with(&format!(
                "ID: {ID}\nRepoTags: 127.0.0.1:5000/node-sdk/busybox:1.35\nRepoDigests: "
            )),
            "{verbose}"
        );
        assert!(verbose.ends_with("Size: 1234567\n\n"), "{verbose}");
    }

    #[test]
    fn images_sort_by_tag_then_digest_then_id() {
        let mut images = vec![
            image(&["b:1"], &[], "3", 0),
            image(&["a:1"], &[], "2", 0),
            image(&[], &["z@sha256:1"], "9", 0),
            image(&[], &["y@sha256:1"], "8", 0),
        ];
        sort_images(&mut images);
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        // Mixed pairs (tag vs none) fall through to the next key.
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().position(|i| *i == "2") < ids.iter().position(|i| *i == "3"));
        assert!(ids.iter().position(|i| *i == "8") < ids.iter().position(|i| *i == "9"));
    }

    #[test]
    fn image_filters() {
        let images = vec![
            image(&["a:1"], &["a@sha256:1"], "sha256:aaa", 0),
            image(&[], &["b@sha256:2"], "sha256:bbb", 0),
            image(&["c:1"], &["c@sha256:3"], "sha256:ccc", 0),
        ];
        let dangling = filter_images(images.clone(), &["dangling=true".into()]).unwrap();
        assert_eq!(dangling.len(), 1);
        assert_eq!(dangling[0].id, "sha256:bbb");
        let tagged = filter_images(images.clone(), &["dangling=false".into()]).unwrap();
        assert_eq!(tagged.len(), 2);
        let reference = filter_images(images.clone(), &["reference=^c$".into()]).unwrap();
        assert_eq!(reference[0].id, "sha256:ccc");
        let since = filter_images(images.clone(), &["since=c:1".into()]).unwrap();
        assert_eq!(since.len(), 2, "images listed before c:1");
        let before = filter_images(images.clone(), &["before=a:1".into()]).unwrap();
        assert_eq!(before.len(), 2, "images listed after a:1");
        assert_eq!(
            filter_images(images, &["size=1".into()]).unwrap_err(),
            "unknown filter flag: size=1"
        );
    }

    #[test]
    fn image_status_and_fs_tables() {
        let img = image(&["a:1"], &["a@sha256:1"], ID, 2_000);
        let text = image_status_table(&img, &HashMap::new(), false);
        assert_eq!(
            text,
            format!("ID: {ID}\nTag: a:1\nDigest: a@sha256:1\nSize: 2kB\n")
        );
        let fs = v1::ImageFsInfoResponse {
            image_filesystems: vec![v1::FilesystemUsage {
                timestamp: 5,
                fs_id: Some(v1::FilesystemIdentifier {
                    mountpoint: "/var/lib/containerd".into(),
                }),
                used_bytes: Some(v1::UInt64Value { value: 4_096 }),
                inodes_used: Some(v1::UInt64Value { value: 12 }),
            }],
            container_filesystems: Vec::new(),
        };
        assert_eq!(
            image_fs_table(&fs),
            "Container Filesystem \nImage Filesystem \nTimeStamp[0]: 5\nDisk[0]: 4.096kB\nInodes[0]: 12\nMountpoint[0]: /var/lib/containerd\n"
        );
    }
}
