"""An optional login for the UI's write pages (enrol, remove), set with `FACESIM_UI_PASSWORD`.

Without it, whoever reaches the UI may enrol and remove (the UI listens on 127.0.0.1 by default);
with it, those two forms need the password once per browser session. Reading pages stay open.
The predictor's admin token never leaves the UI's server side either way.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, redirect, render_template, request, session, url_for

SESSION_KEY = "may_write"
PASSWORD_KEY = "FACESIM_UI_PASSWORD"


def login_needed() -> bool:
    return bool(current_app.config.get(PASSWORD_KEY)) and not session.get(SESSION_KEY)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if login_needed():
            return render_template("login.html", error="Log in to enrol or remove people."), 401
        return view(*args, **kwargs)

    return guarded


def register_login(app: Flask, password: str | None) -> None:
    app.config[PASSWORD_KEY] = password
    app.jinja_env.globals["login_needed"] = login_needed

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if not password:
            return redirect(url_for("gallery"))
        if request.method == "GET":
            return render_template("login.html")
        if not hmac.compare_digest(request.form.get("password", "").encode(), password.encode()):
            return render_template("login.html", error="That password is wrong."), 401
        session[SESSION_KEY] = True
        return redirect(url_for("gallery"), code=303)

    @app.post("/logout")
    def logout() -> Any:
        session.pop(SESSION_KEY, None)
        return redirect(url_for("gallery"), code=303)
