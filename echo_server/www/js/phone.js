/*
 * "Open on your phone": the page's address on the LAN as a QR code, when there is one.
 *
 * What this file is for: showing the box in the page's header when config.json gives a
 * lan_url (the page server runs with --lan): the QR code is the page server's /qr.svg, made
 * from the address it found on this machine's network (the browser's own address may be
 * 127.0.0.1, which a phone cannot use), with the address as text and its .local name if it
 * has one (mdns_url).
 *
 * What it is not: the QR code itself (the page server draws it), or anything a panel does.
 */
echoPage.define("phone", [], function (page) {
  "use strict";

  const QR_IMAGE_URL = "qr.svg";

  /** Show the box for config.lan_url, or keep it hidden when there is none. */
  function showPhoneLink(config) {
    const box = document.getElementById("phone-qr");
    if (!box || !config.lan_url) {
      return false;
    }
    const image = document.getElementById("phone-qr-image");
    image.alt = "QR code of " + config.lan_url;
    image.src = QR_IMAGE_URL;
    const link = document.getElementById("phone-qr-url");
    link.href = config.lan_url;
    link.textContent = config.lan_url;
    if (config.mdns_url) {
      const named = document.getElementById("phone-qr-mdns-url");
      named.href = config.mdns_url;
      named.textContent = config.mdns_url;
      document.getElementById("phone-qr-mdns").hidden = false;
    }
    box.hidden = false;
    return true;
  }

  return { showPhoneLink };
});
