//! `skiff-runtime-service`: the agent's runtime service alone, for the agent crate's
//! own tests and examples, whose executables are not the `skiff` binary (which serves
//! it as `skiff runtime-service`). Arguments: `runtime-service --root DIR`, the socket
//! as fd 3.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = match args.as_slice() {
        [sub, flag, root]
            if sub == skiff_agent::containers::service::SUBCOMMAND && flag == "--root" =>
        {
            root
        }
        _ => {
            eprintln!("usage: skiff-runtime-service runtime-service --root DIR (socket as fd 3)");
            return std::process::ExitCode::FAILURE;
        }
    };
    match skiff_agent::containers::service::serve_inherited(std::path::Path::new(root)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime service: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
