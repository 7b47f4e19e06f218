"""A local stand-in for Stripe's API, for tests: a threaded HTTP server the
real ``stripe`` SDK talks to (its API base pointed here), keeping state for
customers, Checkout Sessions, subscriptions and invoices, and recording the
events Stripe would send, which ``signed`` signs exactly as Stripe does
(``t=<time>,v1=<HMAC-SHA256 of "<time>.<body>">``)."""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

DAY = 86400
MONTH = 30 * DAY


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append({})
                if last:
                    node[position] = value
                else:
                    if not node[position]:
                        node[position] = [] if parts[index + 1].isdigit() else {}
                    node = node[position]
            elif last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if parts[index + 1].isdigit() else {})
    return root


class NotFound(Exception):
    pass


class StripeStub:
    """Stripe's API as far as the plugin uses it, over real HTTP."""

    def __init__(self, secret: str = "whsec_test_secret"):  # noqa: S107 -- the stand-in's own test secret
        self.secret = secret
        self.lock = threading.RLock()
        self.ids = itertools.count(1)
        self.customers: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.disputes: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.down = False  # answer every call 503, as an outage would
        self.delay = 0.0  # seconds before each answer, as a slow Stripe would
        self.clock = int(time.time())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            for store in (self.customers, self.sessions, self.subscriptions, self.invoices, self.charges,
                          self.disputes):
                store.clear()
            self.events.clear()
            self.requests.clear()
            self.down, self.delay = False, 0.0

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):06d}"

    # --- the API ---------------------------------------------------------------------

    def answer(self, method: str, path: str, params: dict[str, Any]) -> dict:
        with self.lock:
            self.requests.append((method, path))
            route = (method, re.sub(r"/(cs|sub|in|cus|ch|dp)_[0-9]+", r"/{\1}", path))
            ident = path.rsplit("/", 1)[-1]
            handlers = {
                ("POST", "/v1/checkout/sessions"): lambda: self._create_session(params),
                ("GET", "/v1/checkout/sessions/{cs}"): lambda: self._get(self.sessions, ident),
                ("POST", "/v1/billing_portal/sessions"): lambda: self._portal(params),
                ("GET", "/v1/subscriptions/{sub}"): lambda: self._get(self.subscriptions, ident),
                ("POST", "/v1/subscriptions/{sub}"): lambda: self._update_subscription(ident, params),
                ("GET", "/v1/invoices/{in}"): lambda: self._get(self.invoices, ident),
                ("POST", "/v1/invoices/create_preview"): lambda: self._preview(params),
                ("GET", "/v1/customers/{cus}"): lambda: self._get(self.customers, ident),
                ("GET", "/v1/charges/{ch}"): lambda: self._get(self.charges, ident),
                ("GET", "/v1/disputes/{dp}"): lambda: self._get(self.disputes, ident),
                ("GET", "/v1/charges"): lambda: self._list(self.charges, path, params, "payment_intent"),
                ("GET", "/v1/disputes"): lambda: self._list(self.disputes, path, params, "charge"),
            }
            handler = handlers.get(route)
            if handler is None:
                raise NotFound(f"Unrecognized request URL ({method}: {path})")
            return handler()

    def _get(self, store: dict, ident: str) -> dict:
        if ident not in store:
            raise NotFound(f"No such object: '{ident}'")
        return store[ident]

    def _list(self, store: dict, path: str, params: dict, field: str) -> dict:
        """A list filtered by ``field`` (one page: the stand-in's lists are short)."""
        found = [obj for obj in store.values() if field not in params or obj.get(field) == params[field]]
        return {"object": "list", "url": path, "has_more": False, "data": found}

    def _create_session(self, params: dict) -> dict:
        line = params["line_items"][0]
        session_id = self._id("cs")
        trial = int(params.get("subscription_data", {}).get("trial_period_days", 0) or 0)
        session = {"id": session_id, "object": "checkout.session", "mode": params["mode"], "status": "open",
                   "payment_status": "unpaid", "customer": params.get("customer"),
                   "customer_email": params.get("customer_email"), "subscription": None, "payment_intent": None,
                   "client_reference_id": params.get("client_reference_id"),
                   "metadata": params.get("metadata", {}), "url": f"{self.url}/pay/{session_id}",
                   "success_url": params["success_url"], "cancel_url": params["cancel_url"],
                   "price": line["price"], "trial_days": trial,
                   "subscription_metadata": params.get("subscription_data", {}).get("metadata", {})}
        self.sessions[session_id] = session
        return session

    def _portal(self, params: dict) -> dict:
        if params["customer"] not in self.customers:
            raise NotFound(f"No such customer: '{params['customer']}'")
        return {"id": self._id("bps"), "object": "billing_portal.session", "customer": params["customer"],
                "url": f"{self.url}/portal/{params['customer']}", "return_url": params.get("return_url")}

    def _update_subscription(self, ident: str, params: dict) -> dict:
        subscription = self._get(self.subscriptions, ident)
        if "cancel_at_period_end" in params:
            subscription["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
        if "items" in params:
            subscription["items"]["data"][0]["price"] = {"id": params["items"][0]["price"], "object": "price"}
        self._event("customer.subscription.updated", subscription)
        return subscription

    def _preview(self, params: dict) -> dict:
        subscription = self._get(self.subscriptions, params["subscription"])
        price = params["subscription_details"]["items"][0]["price"]
        amount = 2000 if "business" in price else 500
        return {"id": None, "object": "invoice", "amount_due": amount, "currency": "eur",
                "subscription": subscription["id"], "lines": {"object": "list", "data": []}}

    # --- what happens at Stripe (test controls) -----------------------------------------

    def _event(self, kind: str, obj: dict) -> dict:
        event = {"id": self._id("evt"), "object": "event", "type": kind, "created": self.clock,
                 "api_version": "2025-01-27.acacia", "data": {"object": json.loads(json.dumps(obj))}}
        self.events.append(event)
        return event

    def complete(self, session_id: str) -> dict:
        """The customer pays on the Checkout page."""
        with self.lock:
            session = self.sessions[session_id]
            customer_id = session["customer"]
            if customer_id is None:
                customer_id = self._id("cus")
                self.customers[customer_id] = {"id": customer_id, "object": "customer",
                                               "email": session["customer_email"]}
                self._event("customer.created", self.customers[customer_id])
            session.update(customer=customer_id, status="complete", payment_status="paid")
            if session["mode"] == "subscription":
                now, trial = self.clock, session["trial_days"]
                subscription_id = self._id("sub")
                subscription = {
                    "id": subscription_id, "object": "subscription", "customer": customer_id,
                    "status": "trialing" if trial else "active", "cancel_at_period_end": False,
                    "trial_end": now + trial * DAY if trial else None,
                    "metadata": session["subscription_metadata"],
                    "items": {"object": "list", "data": [{
                        "id": self._id("si"), "object": "subscription_item",
                        "price": {"id": session["price"], "object": "price"},
                        "current_period_start": now, "current_period_end": now + (trial * DAY if trial else MONTH)}]}}
                self.subscriptions[subscription_id] = subscription
                session["subscription"] = subscription_id
                self._event("customer.subscription.created", subscription)
            else:
                session["payment_intent"] = self._id("pi")
                self._charge(customer_id, 1900, "eur", payment_intent=session["payment_intent"])
            return self._event("checkout.session.completed", session)

    def set_status(self, subscription_id: str, status: str) -> dict:
        with self.lock:
            subscription = self.subscriptions[subscription_id]
            subscription["status"] = status
            kind = "customer.subscription.deleted" if status == "canceled" else "customer.subscription.updated"
            return self._event(kind, subscription)

    def invoice(self, subscription_id: str, paid: bool, invoice_id: str | None = None) -> dict:
        """A renewal invoice (or another attempt of ``invoice_id``) paid or failed."""
        with self.lock:
            subscription = self.subscriptions[subscription_id]
            if invoice_id is None:
                invoice_id = self._id("in")
                self.invoices[invoice_id] = {"id": invoice_id, "object": "invoice",
                                             "customer": subscription["customer"],
                                             "subscription": subscription_id, "amount_due": 2900, "currency": "eur",
                                             "attempt_count": 0, "status": "open",
                                             "parent": {"subscription_details": {"subscription": subscription_id}}}
            invoice = self.invoices[invoice_id]
            invoice["attempt_count"] += 1
            invoice["status"] = "paid" if paid else "open"
            if paid:
                invoice["charge"] = self._charge(invoice["customer"], invoice["amount_due"], invoice["currency"],
                                                 invoice=invoice_id)["id"]
            subscription["status"] = "active" if paid else "past_due"
            self._event("customer.subscription.updated", subscription)
            return self._event("invoice.paid" if paid else "invoice.payment_failed", invoice)

    def _charge(self, customer_id: str, amount: int, currency: str, **links: str) -> dict:
        charge_id = self._id("ch")
        self.charges[charge_id] = {"id": charge_id, "object": "charge", "customer": customer_id, "amount": amount,
                                   "amount_refunded": 0, "refunded": False, "currency": currency, "paid": True,
                                   "disputed": False, **links}
        return self.charges[charge_id]

    def refund(self, charge_id: str, amount: int | None = None) -> dict:
        """Refund ``amount`` (all that is left when None) of a charge, as from Stripe's dashboard."""
        with self.lock:
            charge = self.charges[charge_id]
            left = charge["amount"] - charge["amount_refunded"]
            charge["amount_refunded"] += left if amount is None else min(amount, left)
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            return self._event("charge.refunded", charge)

    def dispute(self, charge_id: str, reason: str = "fraudulent") -> dict:
        """The card's bank disputes a charge."""
        with self.lock:
            charge = self.charges[charge_id]
            charge["disputed"] = True
            dispute_id = self._id("dp")
            self.disputes[dispute_id] = {"id": dispute_id, "object": "dispute", "charge": charge_id,
                                         "amount": charge["amount"], "currency": charge["currency"],
                                         "reason": reason, "status": "needs_response"}
            return self._event("charge.dispute.created", self.disputes[dispute_id])

    def close_dispute(self, dispute_id: str, won: bool) -> dict:
        """The bank decides a dispute: won (the money stays) or lost."""
        with self.lock:
            dispute = self.disputes[dispute_id]
            dispute["status"] = "won" if won else "lost"
            return self._event("charge.dispute.closed", dispute)

    def trial_will_end(self, subscription_id: str) -> dict:
        """Stripe's notice three days before a trial ends."""
        with self.lock:
            return self._event("customer.subscription.trial_will_end", self.subscriptions[subscription_id])

    def signed(self, event: dict, secret: str | None = None, timestamp: int | None = None) -> tuple[str, str]:
        """The body and Stripe-Signature header Stripe would send."""
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, secret or self.secret, timestamp)
        return body, header

    # --- the HTTP side -----------------------------------------------------------------

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _checkout_page(self, method: str) -> bool:
                """The hosted Checkout page, as a browser sees it: Pay completes the session and
                returns to the success URL with the session's id, as Stripe does."""
                found = re.fullmatch(r"/pay/(cs_[0-9]+)", urlsplit(self.path).path)
                if found is None or found.group(1) not in stub.sessions:
                    return False
                session_id = found.group(1)
                if method == "POST":
                    stub.complete(session_id)
                    self.send_response(303)
                    self.send_header("Location", stub.sessions[session_id]["success_url"].replace(
                        "{CHECKOUT_SESSION_ID}", session_id))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pay</title></head>'
                        f'<body><main><h1>Test checkout</h1><form method="post" action="/pay/{session_id}">'
                        f'<button type="submit">Pay</button></form></main></body></html>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return True

            def _serve(self, method: str):
                if stub.delay:
                    time.sleep(stub.delay)
                if self.path.startswith("/pay/") and self._checkout_page(method):
                    return None
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                params = decode_form(body if method == "POST" else parts.query)
                if stub.down:
                    return self._send(503, {"error": {"type": "api_error", "message": "Service unavailable"}})
                if not self.headers.get("Authorization", "").startswith("Bearer sk_"):
                    return self._send(401, {"error": {"type": "invalid_request_error", "message": "No API key"}})
                try:
                    return self._send(200, stub.answer(method, parts.path, params))
                except NotFound as missing:
                    return self._send(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                      "message": str(missing)}})
                except (KeyError, IndexError, ValueError) as bad:
                    return self._send(400, {"error": {"type": "invalid_request_error",
                                                      "message": f"Missing or bad parameter: {bad}"}})

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{next(stub.ids)}")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler
