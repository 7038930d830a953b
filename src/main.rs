fn main() -> std::process::ExitCode {
    exportctl::main()
}
