package net.traffix.core.identity

/**
 * Emulator hints from a phone's build properties, sent in PAIR (tag 10) and shown to the server's
 * admin only. They are weak signals — an emulator can fake every property and a few real phones
 * ship odd ones — so the server never bans on them (docs/trust.md); Key Attestation is the
 * strong check.
 */
object EmulatorHints {
    /** Each hint is a short stable name; at most [net.traffix.core.protocol.MAX_HINTS] of them. */
    fun from(
        fingerprint: String?,
        model: String?,
        manufacturer: String?,
        hardware: String?,
        product: String?,
        brand: String?,
        device: String?,
    ): List<String> {
        fun String?.low() = this?.lowercase().orEmpty()
        val hints = ArrayList<String>()
        val fp = fingerprint.low()
        if (fp.startsWith("generic") || fp.startsWith("unknown") || fp.contains("emulator") || fp.contains("test-keys")) {
            hints.add("fingerprint-generic")
        }
        val m = model.low()
        if (m.contains("google_sdk") || m.contains("emulator") || m.contains("android sdk built for")) hints.add("model-emulator")
        if (manufacturer.low().contains("genymotion")) hints.add("manufacturer-genymotion")
        val hw = hardware.low()
        if (hw == "goldfish" || hw == "ranchu" || hw.startsWith("vbox")) hints.add("hardware-$hw".take(64))
        val p = product.low()
        if (p.contains("sdk") || p.contains("emulator") || p.contains("simulator") || p.contains("vbox")) hints.add("product-sdk")
        if (brand.low().startsWith("generic") && device.low().startsWith("generic")) hints.add("brand-device-generic")
        return hints
    }
}
