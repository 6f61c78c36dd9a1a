-- Played by the mariadb client through record_proxy.py (cli*.rec).
USE app;
CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY, customer VARCHAR(32), total DECIMAL(10,2));
DELETE FROM orders;
INSERT INTO orders VALUES (1, 'alice', 10.50), (2, 'bob', 20.00);
INSERT INTO app.orders (id, customer, total) VALUES (3, 'carol', 7.25);
/* a comment first */ SELECT customer, total FROM `orders` WHERE id = 1;
SELECT o.customer FROM (SELECT * FROM orders WHERE total > 5) AS o JOIN orders p ON p.id = o.id;
WITH big AS (SELECT id FROM orders WHERE total > 8) SELECT COUNT(*) FROM big;
SELECT * FROM orders WHERE customer = 'nobody';
UPDATE orders SET total = total + 1 WHERE id = 2;
DELETE FROM orders WHERE id = 3;
SELECT * FROM missing_table;
INSERT INTO missing_table VALUES (1);
BEGIN;
REPLACE INTO orders VALUES (3, 'dave', 1.00);
COMMIT;
SHOW TABLES;
SET @x = 5;
DELIMITER //
SELECT 1; SELECT 2 //
CREATE PROCEDURE IF NOT EXISTS two_results() BEGIN SELECT 1; SELECT id FROM orders; END //
DELIMITER ;
CALL two_results();
