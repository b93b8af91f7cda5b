"use strict";
// What both review pages share, loaded in their head before their own script.
// The page's own address may carry ?token=; every request and media address of the page carries it on.
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
