"use strict";
// Camera health is a wall display: reload it quietly every 30 s.
setTimeout(() => location.reload(), 30000);
