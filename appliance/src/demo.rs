//! `storcon demo`: three replicas of this binary and three simulated pageservers on loopback,
//! each a real process with its own config and data dir, until Ctrl-C.
//!
//! The pageservers are `pageserver-sim` processes (the workspace crate of that name), found next
//! to this executable; the demo never builds it (`cargo build --release -p storcon -p
//! pageserver-sim` builds both).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const REPLICAS: u64 = 3;
const PAGESERVERS: [(u64, &str); 3] = [(1, "az-a"), (2, "az-a"), (3, "az-b")];
const TENANTS: [(&str, u8); 3] = [
    ("de000000000000000000000000000001", 4),
    ("de000000000000000000000000000002", 0),
    ("de000000000000000000000000000003", 0),
];

/// Kills every child on every exit path.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Children {
    fn spawn(&mut self, name: String, dir: &Path, cmd: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.0.push((name, child));
        Ok(())
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}); see {name}.log");
            }
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_config(dir: &Path, id: u64, addrs: &[(u64, String)]) -> anyhow::Result<PathBuf> {
    let own = &addrs[(id - 1) as usize].1;
    let members: Vec<String> = addrs
        .iter()
        .map(|(i, a)| format!("{{ id = {i}, addr = \"{a}\" }}"))
        .collect();
    let text = format!(
        "node_id = {id}\nlisten_addr = \"{own}\"\ndata_dir = \"{}\"\ninsecure_no_auth = true\n\n\
         [cluster]\nmembers = [{}]\n",
        dir.join(format!("node-{id}")).display(),
        members.join(", ")
    );
    let path = dir.join(format!("node-{id}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `pageserver-sim` next to this executable. It is not built here: a missing one is an error
/// naming the cargo command that builds both binaries in the running profile.
fn find_sim(exe: &Path) -> anyhow::Result<PathBuf> {
    let bin_dir = exe.parent().context("executable has no directory")?;
    let sim = bin_dir.join("pageserver-sim");
    if sim.is_file() {
        return Ok(sim);
    }
    let build = if bin_dir.ends_with("release") {
        "cargo build --release -p storcon -p pageserver-sim"
    } else {
        "cargo build -p storcon -p pageserver-sim"
    };
    bail!(
        "pageserver-sim not found next to {}; build it with `{build}` in the storcon source \
         tree (or put a pageserver-sim binary in {})",
        exe.display(),
        bin_dir.display()
    )
}

/// Runs the demo until SIGINT or SIGTERM; every child is killed on every exit path, because
/// dropping the demo future drops the children it owns.
pub async fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    tokio::select! {
        r = demo(dir) => r,
        _ = crate::signals::shutdown_signal() => {
            println!("stopping");
            Ok(())
        }
    }
}

async fn demo(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            temp = tempfile::Builder::new().prefix("storcon-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let sim = find_sim(&exe)?;
    let addrs: Vec<(u64, String)> = (1..=REPLICAS)
        .map(|id| Ok((id, format!("127.0.0.1:{}", free_port()?))))
        .collect::<anyhow::Result<_>>()?;
    let mut children = Children(Vec::new());
    for (id, _) in &addrs {
        let config = write_config(&dir, *id, &addrs)?;
        children.spawn(
            format!("node-{id}"),
            &dir,
            Command::new(&exe).args(["run", "--config"]).arg(&config),
        )?;
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(40))
        .build()?;
    let leader = wait_for(&mut children, "a leader", || async {
        for (_, addr) in &addrs {
            let v = get(&client, &format!("http://{addr}/control/v1/cluster")).await;
            if let Some(l) = v.ok().and_then(|v| v["leader_id"].as_u64()) {
                return Some(l);
            }
        }
        None
    })
    .await?;

    // Each pageserver talks to a different replica: followers forward to the leader.
    let mut ps_addrs = Vec::new();
    for (i, (id, az)) in PAGESERVERS.iter().enumerate() {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let controller = format!("http://{}", addrs[i % addrs.len()].1);
        children.spawn(
            format!("pageserver-{id}"),
            &dir,
            Command::new(&sim)
                .args([
                    "--node-id",
                    &id.to_string(),
                    "--listen",
                    &listen,
                    "--az",
                    az,
                ])
                .args(["--controller", &controller, "--data-dir"])
                .arg(dir.join(format!("pageserver-{id}")))
                // One bucket for all, so a shard that moves finds its timelines.
                .arg("--remote-storage")
                .arg(dir.join("remote-storage")),
        )?;
        ps_addrs.push((*id, listen));
    }
    let api = format!("http://{}", addrs[0].1);
    wait_for(&mut children, "three active pageservers", || async {
        let nodes = get(&client, &format!("{api}/control/v1/node")).await.ok()?;
        let active = nodes
            .as_array()?
            .iter()
            .filter(|n| n["availability"] == "Active")
            .count();
        (active == PAGESERVERS.len()).then_some(())
    })
    .await?;
    for (tenant, count) in TENANTS {
        let body = json!({
            "new_tenant_id": tenant,
            "shard_parameters": {"count": count, "stripe_size": 2048},
            "placement_policy": {"Attached": 1},
        });
        let resp = client
            .post(format!("{api}/v1/tenant"))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "creating tenant {tenant}: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
    }

    println!("storcon demo: three replicas (node {leader} leads) and three simulated pageservers.");
    println!("  data and logs: {}", dir.display());
    for (id, addr) in &addrs {
        println!("  replica {id}:    http://{addr}/");
    }
    for ((id, az), (_, addr)) in PAGESERVERS.iter().zip(&ps_addrs) {
        println!("  pageserver {id}: http://{addr}/  ({az})");
    }
    println!("\nWhere each shard lives:");
    print_table(&client, &api, &ps_addrs).await?;
    println!("\nTry (any replica accepts any request; followers forward to the leader):");
    println!("  curl -s {api}/control/v1/cluster");
    println!("  curl -s {api}/control/v1/node");
    println!("  curl -s {api}/control/v1/tenant/{}", TENANTS[0].0);
    println!(
        "  curl -s -X PUT -H 'content-type: application/json' -d '{{\"new_shard_count\": 4}}' \\\n      {api}/control/v1/tenant/{}/shard_split",
        TENANTS[1].0
    );
    println!("  kill a pageserver and watch its attached shards move to their secondaries.");
    println!("\nPress Ctrl-C to stop.");

    let mut watch = tokio::time::interval(Duration::from_secs(1));
    loop {
        watch.tick().await;
        if let Err(e) = children.check_running() {
            eprintln!("storcon demo: {e}");
        }
    }
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn wait_for<T, F, Fut>(children: &mut Children, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        children.check_running()?;
        if let Some(v) = probe().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no {what} within 60 s")
}

async fn print_table(
    client: &reqwest::Client,
    api: &str,
    ps_addrs: &[(u64, String)],
) -> anyhow::Result<()> {
    println!(
        "  {:<38} {:>8} {:>10} {:>12}",
        "shard", "attached", "generation", "secondaries"
    );
    for (tenant, _) in TENANTS {
        let described = get(client, &format!("{api}/control/v1/tenant/{tenant}")).await?;
        for shard in described["shards"].as_array().into_iter().flatten() {
            let id = shard["tenant_shard_id"].as_str().unwrap_or("?");
            let attached = shard["node_attached"].as_u64();
            // The generation as the pageserver itself holds it.
            let mut generation = String::from("-");
            if let Some((_, addr)) = ps_addrs.iter().find(|(n, _)| Some(*n) == attached)
                && let Ok(conf) =
                    get(client, &format!("http://{addr}/v1/location_config/{id}")).await
            {
                generation = conf["generation"].to_string();
            }
            println!(
                "  {:<38} {:>8} {:>10} {:>12}",
                id,
                attached.map_or("-".to_string(), |n| n.to_string()),
                generation,
                shard["node_secondary"].to_string()
            );
        }
    }
    Ok(())
}
