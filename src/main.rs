fn main() {
    println!("edgesim");
}
