// Rust 2024: let chains, let-else, async closures, GATs, impl Trait in traits.
use std::collections::HashMap;

trait Store {
    type Item<'a>
    where
        Self: 'a;
    fn get(&self, key: &str) -> Option<Self::Item<'_>>;
    fn keys(&self) -> impl Iterator<Item = &str>;
}

fn parse(input: &str) -> Option<u32> {
    let Some((key, value)) = input.split_once('=') else {
        return None;
    };
    if let Ok(n) = value.parse::<u32>()
        && !key.is_empty()
        && let Some(first) = key.chars().next()
        && first.is_alphabetic()
    {
        return Some(n);
    }
    None
}

async fn fetch_all(urls: &[&str]) -> HashMap<String, usize> {
    let fetch = async |url: &str| url.len();
    let mut sizes = HashMap::new();
    for url in urls {
        sizes.insert(url.to_string(), fetch(url).await);
    }
    sizes
}

const fn square<const N: usize>() -> usize {
    N * N
}
