-- Run once by the postgres image on an empty data volume: one database per server, as deploy/stack.sh creates.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
