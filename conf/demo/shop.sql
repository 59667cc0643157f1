-- Sample shop for scripts/demo: 8 categories, 50 products, 200 customers, 3000 orders
-- and about 9000 order items. Deterministic: every value is computed from MariaDB's
-- sequence tables (seq_1_to_N, the SEQUENCE engine), so two runs load the same rows.
-- Loaded into the schema mee_demo_shop, which conf/demo/app.toml calls `shop`.
DROP DATABASE IF EXISTS mee_demo_shop;
CREATE DATABASE mee_demo_shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE mee_demo_shop;

CREATE TABLE categories (
  id INT PRIMARY KEY,
  name VARCHAR(64) NOT NULL
);
CREATE TABLE products (
  id INT PRIMARY KEY,
  title VARCHAR(128) NOT NULL,
  category_id INT,
  price DECIMAL(10,2) NOT NULL,
  KEY (category_id)
);
CREATE TABLE customers (
  id INT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  email VARCHAR(128),
  created_at DATETIME NOT NULL
);
CREATE TABLE orders (
  id BIGINT PRIMARY KEY,
  customer_id INT NOT NULL,
  status VARCHAR(16) NOT NULL,
  total DECIMAL(10,2) NOT NULL DEFAULT 0,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY (customer_id)
);
CREATE TABLE order_items (
  id INT PRIMARY KEY,
  order_id BIGINT NOT NULL,
  product_id INT NOT NULL,
  quantity INT NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  KEY (order_id),
  KEY (product_id)
);

INSERT INTO categories (id, name)
SELECT seq, ELT(seq, 'Books', 'Tools', 'Garden', 'Kitchen', 'Toys', 'Music', 'Sports', 'Outdoor')
FROM seq_1_to_8;

-- Product n is in category 1 + (n-1) % 8, except product 50, which has none (the
-- handler shows it as "uncategorised").
INSERT INTO products (id, title, category_id, price)
SELECT seq,
       CONCAT(ELT(1 + (seq * 7) % 10, 'Classic', 'Compact', 'Deluxe', 'Eco', 'Handy',
                  'Large', 'Pocket', 'Pro', 'Smart', 'Vintage'),
              ' ',
              ELT(1 + (seq - 1) % 8, 'Novel', 'Hammer', 'Rake', 'Kettle', 'Puzzle',
                  'Ukulele', 'Football', 'Tent'),
              ' ', CHAR(65 + (seq - 1) DIV 8)),
       IF(seq = 50, NULL, 1 + (seq - 1) % 8),
       5 + (seq * 37) % 120 + 0.99
FROM seq_1_to_50;

-- Every 17th customer has no email.
INSERT INTO customers (id, name, email, created_at)
SELECT seq,
       CONCAT(ELT(1 + seq % 20, 'Ann', 'Bob', 'Chen', 'Dana', 'Emil', 'Fatima', 'Goran',
                  'Hana', 'Ivan', 'Jun', 'Kofi', 'Lea', 'Mateo', 'Nia', 'Omar', 'Pia',
                  'Quinn', 'Rosa', 'Sven', 'Tariq'),
              ' ',
              ELT(1 + (seq * 7) % 13, 'Meyer', 'Okafor', 'Novak', 'Silva', 'Tanaka',
                  'Haddad', 'Larsen', 'Kowalski', 'Moreau', 'Rossi', 'Nguyen', 'Smith',
                  'Jensen')),
       NULL,
       '2023-01-01 08:00:00' + INTERVAL seq * 29 HOUR
FROM seq_1_to_200;
UPDATE customers
SET email = IF(id % 17 = 0, NULL,
               LOWER(CONCAT(REPLACE(name, ' ', '.'), '.', id, '@example.com')));

-- Orders 1..3000, spread over 2024, customers assigned round-robin with a stride.
INSERT INTO orders (id, customer_id, status, created_at)
SELECT seq,
       1 + (seq * 37) % 200,
       ELT(1 + (seq * 11) % 10, 'new', 'paid', 'paid', 'shipped', 'shipped', 'delivered',
           'delivered', 'delivered', 'delivered', 'cancelled'),
       '2024-01-01 00:00:00.000' + INTERVAL seq * 10501 SECOND
FROM seq_1_to_3000;

-- 1 to 5 items per order (3 on average): item k of order n has id n*10+k.
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT o.seq * 10 + k.seq, o.seq, p.id, 1 + (o.seq + k.seq) % 4, p.price
FROM seq_1_to_3000 o
JOIN seq_1_to_5 k ON k.seq <= 1 + (o.seq * 7) % 5
JOIN products p ON p.id = 1 + (o.seq * 13 + k.seq * 7) % 50;

UPDATE orders o
JOIN (SELECT order_id, SUM(quantity * price) AS total FROM order_items GROUP BY order_id) t
  ON t.order_id = o.id
SET o.total = t.total;
