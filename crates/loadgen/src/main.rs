//! `loadgen`: runs the call-path benchmarks on loopback and prints a Markdown report of ratios
//! against the `direct` baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p loadgen -- [--calls N] [--concurrency N] [--slow-ms N] [--max-secs N]
//! ```

use std::time::Duration;

use loadgen::Options;

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag}: `{value}` is not a whole number"))?;
        match flag.as_str() {
            "--calls" => options.calls = usize::try_from(n)?,
            "--concurrency" => options.concurrency = usize::try_from(n)?,
            "--slow-ms" => options.slow = Duration::from_millis(n),
            "--max-secs" => options.max_time = Duration::from_secs(n),
            other => anyhow::bail!(
                "unknown option {other} (known: --calls, --concurrency, --slow-ms, --max-secs)"
            ),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse(&args)?;
    let report = loadgen::run(options).await?;
    print!("{}", report.to_markdown());
    Ok(())
}
