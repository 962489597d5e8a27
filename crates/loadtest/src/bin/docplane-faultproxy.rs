//! `docplane-faultproxy`: a TCP proxy that passes, delays, stalls, drops or cuts the traffic between
//! docplane and a node (or PostgreSQL), switched at run time through a control port.
//!
//! ```text
//! docplane-faultproxy serve --listen 127.0.0.1:PORT --target 127.0.0.1:NODE_PORT --control 127.0.0.1:CTL
//! docplane-faultproxy ctl 127.0.0.1:CTL delay 500     # pass | delay MS | stall | cut | drop | status
//! ```
//! Loopback addresses only; `serve` stops by itself after `--max-secs` (default one hour).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use docplane_loadtest::proxy::{self, Mode, Proxy};
use docplane_loadtest::target::loopback_addr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Parser)]
#[command(name = "docplane-faultproxy", about = "Fault-injecting TCP proxy (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the proxy.
    Serve {
        /// Where clients connect (127.0.0.1:0 picks a port; the chosen one is printed).
        #[arg(long)]
        listen: SocketAddr,
        /// Where the traffic goes.
        #[arg(long)]
        target: SocketAddr,
        /// Control port: one command per line.
        #[arg(long)]
        control: SocketAddr,
        /// Stop after this many seconds (1..=86400).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        max_secs: u64,
        /// Start with `delay MS` instead of `pass`.
        #[arg(long, value_name = "MS")]
        delay_ms: Option<u64>,
    },
    /// Send one command to a running proxy and print its answer.
    Ctl {
        control: SocketAddr,
        /// pass | delay MS | stall | cut | drop | status
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Serve { listen, target, control, max_secs, delay_ms } => {
            serve(listen, target, control, Duration::from_secs(max_secs), delay_ms).await
        }
        Cmd::Ctl { control, command } => ctl(control, &command.join(" ")).await,
    }
}

async fn serve(
    listen: SocketAddr,
    target: SocketAddr,
    control: SocketAddr,
    lifetime: Duration,
    delay_ms: Option<u64>,
) -> Result<()> {
    for a in [listen, target, control] {
        loopback_addr(a)?;
    }
    let mode = match delay_ms {
        None => Mode::Pass,
        Some(ms) => match proxy::parse_command(&format!("delay {ms}")).map_err(anyhow::Error::msg)? {
            proxy::Command::Set(m) => m,
            _ => bail!("--delay-ms: not a delay"),
        },
    };
    let listener = TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let ctl = TcpListener::bind(control).await.with_context(|| format!("listening on {control}"))?;
    let proxy = Proxy::start(listener, target, mode)?;
    println!(
        "faultproxy {} -> {target}, control {}, mode {}",
        proxy.local_addr(),
        ctl.local_addr()?,
        proxy.mode()
    );
    let stop = tokio::time::sleep(lifetime);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => {
                println!("faultproxy: lifetime of {}s reached, stopping", lifetime.as_secs());
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = ctl.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                if let Err(e) = control_session(conn, &proxy).await {
                    eprintln!("faultproxy: control connection: {e}");
                }
            }
        }
    }
}

/// One control connection: a command per line, an answer per line, until the peer closes.
async fn control_session(conn: TcpStream, proxy: &Proxy) -> Result<()> {
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.context("control: idle")??
    {
        let answer = match proxy::parse_command(&line) {
            Ok(cmd) => {
                let status = proxy.apply(cmd);
                println!("faultproxy: {} -> {status}", line.trim());
                status
            }
            Err(e) => format!("error {e}"),
        };
        w.write_all(answer.as_bytes()).await?;
        w.write_all(b"\n").await?;
    }
    Ok(())
}

async fn ctl(control: SocketAddr, command: &str) -> Result<()> {
    loopback_addr(control)?;
    let conn = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(control))
        .await
        .context("connecting to the control port: timed out")?
        .with_context(|| format!("connecting to {control}"))?;
    let (r, mut w) = conn.into_split();
    w.write_all(format!("{command}\n").as_bytes()).await?;
    w.shutdown().await?;
    let mut lines = BufReader::new(r).lines();
    let answer = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .context("waiting for the proxy's answer: timed out")??
        .context("the proxy closed the control connection without answering")?;
    println!("{answer}");
    if answer.starts_with("error") {
        bail!("{answer}");
    }
    Ok(())
}
