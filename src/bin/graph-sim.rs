//! Runs the Graph simulator as its own process (filled in by the Graph capability).

fn main() {
    eprintln!("graph-sim: not implemented yet");
    std::process::exit(2);
}
