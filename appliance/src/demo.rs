//! `storcon demo`: three replicas of this binary on loopback, each a real `storcon run` process
//! with its own config file and data dir, until Ctrl-C.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const REPLICAS: u64 = 3;

/// Kills every child on every exit path.
struct Children(Vec<(u64, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
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

pub async fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
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
    let addrs: Vec<(u64, String)> = (1..=REPLICAS)
        .map(|id| Ok((id, format!("127.0.0.1:{}", free_port()?))))
        .collect::<anyhow::Result<_>>()?;
    let mut children = Children(Vec::new());
    for (id, _) in &addrs {
        let config = write_config(&dir, *id, &addrs)?;
        let log = std::fs::File::create(dir.join(format!("node-{id}.log")))?;
        let child = Command::new(&exe)
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start replica")?;
        children.0.push((*id, child));
    }

    let client = reqwest::Client::builder().no_proxy().build()?;
    let leader = wait_for_leader(&client, &addrs, &mut children).await?;
    println!("storcon demo: three replicas are up; node {leader} leads.");
    println!("  data and logs: {}", dir.display());
    for (id, addr) in &addrs {
        println!("  node {id}: http://{addr}/   (log: node-{id}.log)");
    }
    let any = &addrs[0].1;
    println!("\nTry (any replica accepts any request; followers forward to the leader):");
    println!("  curl -s http://{any}/control/v1/cluster");
    println!(
        "  curl -s -XPOST http://{any}/control/v1/node -H 'content-type: application/json' \\\n    \
         -d '{{\"node_id\":1,\"listen_http_addr\":\"127.0.0.1\",\"listen_http_port\":9898,\
         \"listen_pg_addr\":\"127.0.0.1\",\"listen_pg_port\":64000,\"availability_zone_id\":\"az-a\"}}'"
    );
    println!("  curl -s http://{any}/control/v1/node");
    println!("\nPress Ctrl-C to stop.");

    let mut watch = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = watch.tick() => {
                for (id, child) in &mut children.0 {
                    if let Some(status) = child.try_wait()? {
                        eprintln!("storcon demo: node {id} exited ({status}); see node-{id}.log");
                    }
                }
            }
        }
    }
    println!("stopping");
    Ok(())
}

async fn wait_for_leader(
    client: &reqwest::Client,
    addrs: &[(u64, String)],
    children: &mut Children,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for (id, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("replica {id} exited during start-up ({status})");
            }
        }
        for (_, addr) in addrs {
            let status = client
                .get(format!("http://{addr}/control/v1/cluster"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(resp) = status
                && let Ok(v) = resp.json::<serde_json::Value>().await
                && let Some(leader) = v["leader_id"].as_u64()
            {
                return Ok(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no leader was elected within 60 s")
}
