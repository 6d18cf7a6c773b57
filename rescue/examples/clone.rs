//! Temporary driver for `rescue clone` until main.rs wires it: `cargo run --example clone -- SRC DST [--verify]`.
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: rescue::clone::CloneArgs,
    /// Print the summary as JSON too.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let s = rescue::clone::run(&cli.args)?;
    if cli.json {
        println!("{}", serde_json::to_string(&s)?);
    }
    Ok(())
}
