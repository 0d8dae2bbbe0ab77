"""Digiflazz's response codes (rc) and what each means for a delivery.

Per https://developer.digiflazz.com/api/buyer/response-code/. Its column
"Terbentuk Transaksi" says whether Digiflazz created a transaction under the
ref_id: if it did, the ref_id is spent and sending it again only repeats the
answer (a status check), so a retry needs a new ref_id; if it did not, the
same ref_id can be tried again.

Only rc "00" with status "Sukses" is a delivery. Anything not in this table,
or an rc that contradicts its status, is retried and never delivered.
"""
from __future__ import annotations

from topup.delivery import DeliveryResult

SUKSES, PENDING, GAGAL = "Sukses", "Pending", "Gagal"
FINAL = frozenset({SUKSES, GAGAL})

SUCCESS_RC = "00"
PENDING_RC = {"03": "Transaksi Pending", "99": "DF Router Issue"}

# rc -> (our answer, transaction formed (ref_id spent), Digiflazz's text, what the operator does)
GAGAL_RC: dict[str, tuple[str, bool, str, str | None]] = {
    "01": ("retry", True, "Timeout", None),
    "02": ("retry", True, "Transaksi Gagal", None),
    "40": ("failed", False, "Payload Error", "a request this plugin built was refused"),
    "41": ("failed", False, "Signature tidak valid",
           "check api_key, and that it matches the mode (development or production)"),
    "42": ("failed", False, "Gagal memproses API Buyer", "check the username setting"),
    "43": ("failed", False, "SKU tidak di temukan atau Non-Aktif",
           "check the skus setting against your Digiflazz price list"),
    "44": ("failed", False, "Saldo tidak cukup",
           "top up your Digiflazz deposit, then retry the delivery"),
    "45": ("failed", False, "IP Anda tidak kami kenali",
           "whitelist this server's IP address in Digiflazz (Atur Koneksi > API)"),
    "47": ("failed", False, "Transaksi sudah terjadi di buyer lain", None),
    "49": ("failed", False, "Ref ID tidak unik", None),
    "50": ("failed", True, "Transaksi Tidak Ditemukan", None),
    "51": ("failed", True, "Nomor Tujuan Diblokir", None),
    "52": ("failed", True, "Prefix Tidak Sesuai Dengan Operator", None),
    "53": ("retry", True, "Produk Seller Sedang Tidak Tersedia", None),
    "54": ("failed", True, "Nomor Tujuan Salah", "the account id was refused"),
    "55": ("retry", True, "Produk Sedang Gangguan", None),
    "56": ("retry", False, "Limit saldo seller", None),
    "57": ("failed", True, "Jumlah Digit Kurang Atau Lebih", "the account id was refused"),
    "58": ("retry", True, "Sedang Cut Off", None),
    "59": ("failed", True, "Tujuan di Luar Wilayah/Cluster", None),
    "60": ("failed", True, "Tagihan belum tersedia", None),
    "61": ("failed", False, "Belum pernah melakukan deposit", "make a first Digiflazz deposit"),
    "62": ("retry", False, "Seller sedang mengalami gangguan", None),
    "63": ("retry", False, "Tidak support transaksi multi", None),
    "64": ("failed", False, "Tarik tiket gagal", None),
    "65": ("retry", False, "Limit transaksi multi", None),
    "66": ("retry", False, "Cut Off (Perbaikan Sistem Seller)", None),
    "67": ("failed", False, "Seller belum ter-verfikasi", None),
    "68": ("retry", False, "Stok habis", None),
    "69": ("failed", False, "Harga seller lebih besar dari ketentuan harga Buyer",
           "raise the product's maximum price in Digiflazz, or choose another seller"),
    "70": ("retry", True, "Timeout Dari Biller", None),
    "71": ("retry", True, "Produk Sedang Tidak Stabil", None),
    "72": ("failed", True, "Lakukan Unreg Paket Dahulu", None),
    "73": ("failed", True, "Kwh Melebihi Batas", None),
    "74": ("failed", True, "Transaksi Refund",
           "Digiflazz refunded it; check before delivering again"),
    "80": ("failed", False, "Akun Anda telah diblokir oleh Seller", None),
    "81": ("failed", False, "Seller ini telah diblokir oleh Anda", None),
    "82": ("failed", False, "Akun Anda belum ter-verfikasi", "verify your Digiflazz account"),
    "83": ("retry", False, "Limitasi pengecekan pricelist tercapai", None),
    "84": ("failed", True, "Nominal tidak valid", None),
    "85": ("retry", True, "Limitasi transaksi tercapai", None),
    "86": ("retry", True, "Limitasi pengecekan nomor PLN tercapai", None),
    "87": ("failed", False, "Transaksi E-money wajib kelipatan Rp 1.000", None),
    "88": ("failed", False, "Akun Anda tidak dapat melakukan aksi ini", None),
}


def spent(status: str | None, rc: str | None) -> bool:
    """A definite failure under which Digiflazz holds a transaction: the ref_id
    cannot buy again, so the next try needs a new one."""
    known = GAGAL_RC.get(rc or "")
    return status == GAGAL and known is not None and known[1]


def reusable(status: str | None, rc: str | None) -> bool:
    """A definite failure that formed no transaction: the same ref_id can be
    sent again as a first try, with a corrected request if need be."""
    known = GAGAL_RC.get(rc or "")
    return status == GAGAL and known is not None and not known[1]


def interpret(ref_id: str, status: str | None, rc: str | None, sn: str | None,
              message: str | None) -> DeliveryResult:
    """What Digiflazz's latest word on ref_id means for the delivery."""
    said = f": {message}" if message else ""
    if rc == SUCCESS_RC and status == SUKSES:
        return DeliveryResult("delivered", reference=(sn or ref_id)[:100],
                              message=f"Digiflazz {ref_id}: Sukses")
    if rc in PENDING_RC and status == PENDING:
        return DeliveryResult("pending", reference=ref_id,
                              message=f"Digiflazz {ref_id}: rc {rc} ({PENDING_RC[rc]})")
    known = GAGAL_RC.get(rc or "")
    if known is not None and status == GAGAL:
        action, _formed, text, todo = known
        return DeliveryResult(action, message=f"Digiflazz {ref_id}: rc {rc} ({text}){said}"
                              + (f"; {todo}" if todo else ""))
    return DeliveryResult("retry", message=f"Digiflazz {ref_id}: unexpected answer, status "
                          f"{status!r} rc {rc!r}{said}")
