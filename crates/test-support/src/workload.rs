//! A random workload on the shop fixture (crates/mysql/tests/fixtures/shop.sql)
//! touching every table: order inserts with items, status changes in and out of the
//! `orders` handler's WHERE, lookup and nested-lookup renames, items moving between
//! orders, deletes. Deterministic for a seed.

/// A small xorshift generator: reproducible, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One random change as SQL (several statements for some), for step `i`. New orders
/// get ids from 100000 + i, new items from 100000 + i.
pub fn shop_change(rng: &mut Rng, i: u64) -> String {
    let pick_order = |rng: &mut Rng| {
        if i > 0 && rng.below(2) == 0 {
            100_000 + rng.below(i)
        } else {
            1001 + rng.below(4)
        }
    };
    match rng.below(10) {
        0 | 1 => {
            let id = 100_000 + i;
            let customer = 1 + rng.below(2);
            format!(
                "INSERT INTO orders VALUES ({id}, {customer}, 'new', {}.{:02}, '2024-08-01 00:00:00');\
                 INSERT INTO order_items VALUES ({id}, {id}, {}, {}, 1.00);",
                rng.below(500),
                rng.below(100),
                1 + rng.below(3),
                1 + rng.below(5)
            )
        }
        2 => {
            let status = ["new", "paid", "shipped", "deleted"][rng.below(4) as usize];
            format!(
                "UPDATE orders SET status = '{status}' WHERE id = {}",
                pick_order(rng)
            )
        }
        3 => format!(
            "UPDATE customers SET name = 'customer {}' WHERE id = {}",
            rng.below(1000),
            1 + rng.below(2)
        ),
        4 => format!(
            "UPDATE products SET title = 'product {}' WHERE id = {}",
            rng.below(1000),
            1 + rng.below(3)
        ),
        5 => format!(
            "UPDATE categories SET name = 'category {}' WHERE id = {}",
            rng.below(1000),
            1 + rng.below(2)
        ),
        6 => format!(
            "UPDATE order_items SET order_id = {} WHERE id IN (SELECT id FROM (SELECT id FROM order_items ORDER BY RAND({}) LIMIT 1) AS t)",
            pick_order(rng),
            rng.below(1_000_000)
        ),
        7 => format!(
            "UPDATE order_items SET quantity = quantity + 1 WHERE order_id = {}",
            pick_order(rng)
        ),
        8 => format!(
            "DELETE FROM order_items WHERE id IN (SELECT id FROM (SELECT id FROM order_items ORDER BY RAND({}) LIMIT 1) AS t)",
            rng.below(1_000_000)
        ),
        _ => {
            let id = pick_order(rng);
            format!(
                "DELETE FROM order_items WHERE order_id = {id}; DELETE FROM orders WHERE id = {id}"
            )
        }
    }
}
