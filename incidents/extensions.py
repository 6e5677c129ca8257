"""Unbound extension objects, bound to an app in create_app."""

from flask_alembic import Alembic
from flask_login import LoginManager
from flask_sqlalchemy_lite import SQLAlchemy
from flask_wtf import CSRFProtect

from incidents.database import Base

db = SQLAlchemy()
alembic = Alembic(metadatas=Base.metadata)
login_manager = LoginManager()
csrf = CSRFProtect()
