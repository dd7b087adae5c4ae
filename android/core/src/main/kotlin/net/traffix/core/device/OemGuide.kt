package net.traffix.core.device

/**
 * Which battery-manager guide to show: several phone makers end background services on their
 * own, beyond Android's Doze, unless the owner exempts the app in the maker's settings (the
 * steps differ by maker; dontkillmyapp.com keeps them current). [resName] is the string
 * resource with the steps for that maker.
 */
enum class OemGuide(val resName: String, private val makers: List<String>) {
    XIAOMI("guide_xiaomi", listOf("xiaomi", "redmi", "poco")),
    HUAWEI("guide_huawei", listOf("huawei", "honor")),
    SAMSUNG("guide_samsung", listOf("samsung")),
    ONEPLUS("guide_oneplus", listOf("oneplus")),
    OPPO("guide_oppo", listOf("oppo", "realme")),
    VIVO("guide_vivo", listOf("vivo", "iqoo")),
    OTHER("guide_other", emptyList()),
    ;

    companion object {
        /** The guide for `Build.MANUFACTURER` (or BRAND); [OTHER] for makers without extra steps. */
        fun forMaker(manufacturer: String?, brand: String? = null): OemGuide {
            val names = listOfNotNull(manufacturer, brand).map { it.trim().lowercase() }
            return values().firstOrNull { g -> g.makers.any { m -> names.any { it == m || it.startsWith("$m ") } } } ?: OTHER
        }
    }
}
