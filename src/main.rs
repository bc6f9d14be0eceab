fn main() {
    edgesim::cli::main()
}
