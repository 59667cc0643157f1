-- Run once by the mysql image on first start (docker-compose.yml).
CREATE DATABASE IF NOT EXISTS shop;
CREATE USER IF NOT EXISTS 'mee'@'%' IDENTIFIED BY 'mee-local-only';
GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'mee'@'%';
