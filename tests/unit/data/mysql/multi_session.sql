-- Played by the mariadb client through record_proxy.py (multi*.rec): multi-statement queries
-- (the client sends what is between delimiters as one COM_QUERY), CALL among them, and an
-- error that ends its query (the statements after it are not run).
DROP TABLE IF EXISTS m1;
DROP PROCEDURE IF EXISTS two_sets;
CREATE TABLE m1 (id INT PRIMARY KEY, v INT);
DELIMITER //
CREATE PROCEDURE two_sets() BEGIN SELECT 1; SELECT id FROM m1; END //
INSERT INTO m1 VALUES (1, 1); INSERT INTO m1 VALUES (2, 2); SELECT v FROM m1 WHERE id = 1; UPDATE m1 SET v = 3 //
CALL two_sets(); DELETE FROM m1 WHERE id = 2; CALL two_sets() //
SELECT v FROM m1; SELECT x FROM missing_m; DELETE FROM m1 //
SELECT 1; USE information_schema; SELECT COUNT(*) FROM app.m1 //
DELIMITER ;
