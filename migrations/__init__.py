"""Schema migrations, one folder per domain (Tortoise apps named as in server/infra/db.py).

Installed as the package `server.migrations` (pyproject's package-dir maps this folder
there), so `haodian migrate` finds them in an editable checkout and in an installed wheel
alike; `haodian makemigrations <domain>` writes new files into this folder."""
