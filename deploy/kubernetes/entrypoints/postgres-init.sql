-- run once by the postgres image on an empty volume: the MLflow auth app's own database
CREATE DATABASE mlflow_auth OWNER mlflow;
