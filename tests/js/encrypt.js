// Reads {"rsa": PEM, "sm2": hex, "passwords": [...]} as JSON on stdin and prints, as JSON, for each
// password the ciphertexts GenAuth's JavaScript SDKs would send: jsencrypt (RSA, base64) and sm-crypto
// (SM2, cipher mode 1 = C1C3C2, and mode 0 = C1C2C3).
"use strict";

const JSEncrypt = require("jsencrypt");
const { sm2 } = require("sm-crypto");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const rsa = new JSEncrypt();
  rsa.setPublicKey(request.rsa);
  const results = request.passwords.map((password) => {
    const rsaCiphertext = rsa.encrypt(password);
    if (!rsaCiphertext) {
      throw new Error("jsencrypt could not encrypt");
    }
    return {
      rsa: rsaCiphertext,
      sm2: sm2.doEncrypt(password, request.sm2, 1),
      sm2_c1c2c3: sm2.doEncrypt(password, request.sm2, 0),
    };
  });
  process.stdout.write(JSON.stringify(results));
});
