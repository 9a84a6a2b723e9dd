/*
 * refersion-cart.js — the storefront half of the Refersion cart id, for BigCommerce.
 *
 * Added with Script Manager to the "Order confirmation" page only:
 *   <script src="https://BRIDGE/storefront/refersion-cart.js" data-store-hash="STORE_HASH"
 *           data-order-id="{{checkout.order.id}}" async></script>
 *
 * Reads the order's cart id from the storefront's own order API for the shopper's session
 * (GET /api/storefront/orders/{orderId}, field cartId), hands it to Refersion's tracker
 * (v4: r.sendCheckoutEvent; v3: _rfsn._addCart) once per order, and posts
 * {store_hash, order_id, cart_id} once to the bridge it was loaded from. It never throws
 * into the page: every failure goes to console.debug.
 */
(function () {
  "use strict";
  var TRACKER_WAIT_MS = 8000; // how long a v4 tracker still loading is waited for
  var GUARD_PREFIX = "rfsn_bridge_done_"; // localStorage: what was done for an order

  function debug() {
    try {
      var args = Array.prototype.slice.call(arguments);
      args.unshift("[refersion-cart]");
      console.debug.apply(console, args);
    } catch (ignored) { /* no console */ }
  }

  // Captured synchronously: document.currentScript is null once the script has run.
  var tag = document.currentScript;

  function storage() {
    try {
      var probe = "rfsn_bridge_probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (error) {
      return null; // blocked (private mode, cookies off): the guard then lives in memory only
    }
  }

  var memory = {};
  function done(orderId, step) {
    var key = GUARD_PREFIX + step + "_" + orderId;
    var store = storage();
    return store ? store.getItem(key) === "1" : memory[key] === true;
  }
  function markDone(orderId, step) {
    var key = GUARD_PREFIX + step + "_" + orderId;
    var store = storage();
    if (store) {
      try { store.setItem(key, "1"); } catch (error) { memory[key] = true; }
    } else {
      memory[key] = true;
    }
  }

  function orderIdOf(script) {
    var given = script && script.getAttribute("data-order-id");
    if (given && /^[0-9]{1,10}$/.test(given.trim())) return parseInt(given.trim(), 10);
    // Else the confirmation URL: /checkout/order-confirmation/123 or ?order_id=123.
    var path = /\/order-confirmation\/([0-9]{1,10})(?:[/?#]|$)/.exec(window.location.pathname);
    if (path) return parseInt(path[1], 10);
    var query = /[?&]order_?id=([0-9]{1,10})(?:&|$)/i.exec(window.location.search);
    return query ? parseInt(query[1], 10) : null;
  }

  function bridgeOrigin(script) {
    try {
      return new URL(script.src, window.location.href).origin;
    } catch (error) {
      return null;
    }
  }

  function v4Tracker() {
    var r = window.r;
    return r && typeof r.sendCheckoutEvent === "function" ? r : null;
  }

  function v3Tracker() {
    return typeof window._refersion === "function" ? window._refersion : null;
  }

  // The v4 tracker loads asynchronously and announces itself with a "refersion-loaded" event.
  function whenTrackerReady() {
    return new Promise(function (resolve) {
      if (v4Tracker() || v3Tracker()) return resolve();
      var finished = false;
      function finish() {
        if (finished) return;
        finished = true;
        document.removeEventListener("refersion-loaded", finish);
        window.removeEventListener("refersion-loaded", finish);
        resolve();
      }
      document.addEventListener("refersion-loaded", finish);
      window.addEventListener("refersion-loaded", finish);
      setTimeout(finish, TRACKER_WAIT_MS);
    });
  }

  function handToTracker(cartId) {
    var r = v4Tracker();
    if (r) {
      var ls = storage() || {};
      r.sendCheckoutEvent(cartId, ls.rfsn_v4_id, window.location.href, ls.rfsn_v4_aid, ls.rfsn_v4_cs);
      return "v4";
    }
    var v3 = v3Tracker();
    if (v3) {
      v3(function () { window._rfsn._addCart(cartId); });
      return "v3";
    }
    return null;
  }

  async function cartIdOf(orderId) {
    var response = await fetch("/api/storefront/orders/" + orderId, { credentials: "include", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("the storefront order API answered HTTP " + response.status);
    var order = await response.json();
    var cartId = order && typeof order.cartId === "string" ? order.cartId.trim() : "";
    if (!cartId) throw new Error("the storefront order has no cartId");
    return cartId;
  }

  async function post(origin, storeHash, orderId, cartId) {
    var response = await fetch(origin + "/storefront/cart", {
      method: "POST",
      credentials: "omit",
      keepalive: true, // the shopper may leave or reload the page while it is on its way
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ store_hash: storeHash, order_id: orderId, cart_id: cartId }),
    });
    if (response.status >= 500 || response.status === 429) {
      throw new Error("the bridge answered HTTP " + response.status + "; tried again on the next visit");
    }
    return response.status; // 202 recorded, 409 already reported, other 4xx: nothing to retry
  }

  async function trackerOnce(orderId, cartId) {
    if (done(orderId, "tracker")) return debug("cart id already handed to Refersion's tracker for order " + orderId);
    await whenTrackerReady();
    try {
      var which = handToTracker(cartId);
      if (!which) return debug("no Refersion tracker on this page");
      markDone(orderId, "tracker");
      debug("cart id handed to Refersion's " + which + " tracker");
    } catch (error) {
      debug("Refersion's tracker failed:", error && error.message ? error.message : error);
    }
  }

  async function postOnce(origin, storeHash, orderId, cartId) {
    if (done(orderId, "posted")) return debug("cart id already posted to the bridge for order " + orderId);
    markDone(orderId, "posted"); // before the request: a reload while it runs does not post again
    try {
      debug("bridge answered HTTP " + (await post(origin, storeHash, orderId, cartId)));
    } catch (error) {
      // Only a failure worth retrying clears the guard, for the next visit of this page.
      var key = GUARD_PREFIX + "posted_" + orderId;
      var store = storage();
      if (store) store.removeItem(key);
      delete memory[key];
      debug("posting to the bridge failed:", error && error.message ? error.message : error);
    }
  }

  async function main() {
    if (!tag) return debug("cannot find its own script tag (loaded by another script?)");
    var storeHash = (tag.getAttribute("data-store-hash") || "").trim();
    var orderId = orderIdOf(tag);
    var origin = bridgeOrigin(tag);
    if (!storeHash || !orderId || !origin) {
      return debug("missing data-store-hash, the order id or its own origin", storeHash, orderId, origin);
    }
    if (done(orderId, "tracker") && done(orderId, "posted")) return debug("already done for order " + orderId);
    var cartId = await cartIdOf(orderId);
    // The bridge does not wait for the tracker: a page without one still reports the cart id.
    await Promise.all([postOnce(origin, storeHash, orderId, cartId), trackerOnce(orderId, cartId)]);
  }

  try {
    main().catch(function (error) { debug("stopped:", error && error.message ? error.message : error); });
  } catch (error) {
    debug("stopped:", error);
  }
})();
